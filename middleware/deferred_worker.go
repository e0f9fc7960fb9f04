package middleware

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Run replays deferred requests on DeferConfig.Workers goroutines and sweeps expired
// results, until ctx ends; then it waits for the replays under way (their requests'
// context is canceled) and returns ctx's error. Only one Run may run at a time
// ([ErrDeferrerRunning]).
func (d *Deferrer) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrDeferrerRunning
	}
	defer d.running.Store(false)
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() { d.work(ctx) })
	}
	d.wake() // requests a durable store kept from before
	every := min(max(d.cfg.TTL/8, time.Second), time.Minute)
	for {
		t := d.clock.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			wg.Wait()
			return ctx.Err()
		case <-t.C():
			if _, err := d.Sweep(ctx); err != nil {
				d.logger.Error("middleware: deferrer: sweep", "err", err)
			}
			d.wake() // a worker idle after a store error looks again
		}
	}
}

func (d *Deferrer) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// work claims and replays requests until ctx ends, sleeping while none is pending.
func (d *Deferrer) work(ctx context.Context) {
	for ctx.Err() == nil {
		req, ok, err := d.store.Claim(ctx)
		if err != nil {
			d.stats.storeErrors.Add(1)
			d.logger.Error("middleware: deferrer: claim a request", "err", err)
			ok = false
		}
		if !ok {
			select {
			case <-d.kick:
			case <-ctx.Done():
			}
			continue
		}
		d.wake() // more may be pending: wake another worker
		d.stats.pending.Add(-1)
		d.stats.running.Add(1)
		d.replay(ctx, req)
		d.stats.running.Add(-1)
	}
}

// replay admits req (asking again every RetryInterval), serves it through its
// handler, and stores the result.
func (d *Deferrer) replay(ctx context.Context, req DeferredRequest) {
	h := d.handler(req.Handler)
	var res DeferredResult
	if h == nil {
		res = d.madeResult(http.StatusServiceUnavailable, "abandoned")
		d.stats.abandoned.Add(1)
	} else if permit, start, ok := d.admit(ctx, h, req.Keys); !ok {
		res = d.madeResult(http.StatusServiceUnavailable, "abandoned")
		d.stats.abandoned.Add(1)
	} else {
		res = d.serve(ctx, h, req, start, permit)
	}
	// The result is stored even when ctx ended, so no poll waits for it forever.
	if err := d.store.Complete(context.WithoutCancel(ctx), req.ID, res, res.Done.Add(d.cfg.TTL)); err != nil {
		d.stats.storeErrors.Add(1)
		d.logger.Error("middleware: deferrer: store a result", "err", err)
	}
	d.stats.completed.Add(1)
	if h != nil && req.Keys.Route != "" {
		o := metrics.Observation{Latency: res.Done.Sub(req.Accepted), Bytes: int64(len(res.Body))}
		if res.Status >= 500 {
			o.Outcome = metrics.OutcomeError
		}
		h.cfg.registry.Window(metrics.ScopeDeferred, req.Keys.Route).DoneAt(res.Done, o)
	}
}

// admit asks h's admission for a permit for keys until it gets one; false when ctx
// ends first.
func (d *Deferrer) admit(ctx context.Context, h *Handler, keys Keys) (Permit, time.Time, bool) {
	for {
		start := h.cfg.clock.Now()
		if h.cfg.admission == nil {
			return Permit{}, start, true
		}
		p, err := h.cfg.admission.Admit(ctx, Info{Route: keys.Route, Tenant: keys.Tenant, Model: keys.Model, Priority: keys.Priority, Now: start})
		if err == nil {
			return p, start, true
		}
		if ctx.Err() != nil {
			return Permit{}, start, false
		}
		d.stats.retries.Add(1)
		t := d.clock.NewTimer(d.cfg.RetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return Permit{}, start, false
		case <-t.C():
		}
	}
}

// serve runs req through the rest of h's middleware and records its response.
func (d *Deferrer) serve(ctx context.Context, h *Handler, req DeferredRequest, start time.Time, permit Permit) (res DeferredResult) {
	r, err := http.NewRequestWithContext(ctx, req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		// A URL that parsed when it arrived parses again; this is defence only.
		permit.Drop()
		return d.madeResult(http.StatusBadGateway, "abandoned")
	}
	r.RequestURI = req.URL
	r.Host, r.Pattern, r.RemoteAddr = req.Host, req.Pattern, req.RemoteAddr
	r.Header = req.Header
	if r.Header == nil {
		r.Header = http.Header{}
	}
	rec := &resultWriter{hdr: http.Header{}, max: d.cfg.MaxResultBytes}
	defer func() {
		// A panicking handler was recorded by the middleware and freed its permit;
		// here it becomes a 500 result instead of ending the process.
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				d.logger.Error("middleware: deferrer: replayed handler panicked", "panic", v)
			}
			res = d.madeResult(http.StatusInternalServerError, "panic")
		}
	}()
	h.serve(rec, r, req.Keys, start, permit)
	return rec.result(d.clock.Now())
}

// madeResult is a result the deferrer made itself, with [DeferredHeader] why.
func (d *Deferrer) madeResult(status int, why string) DeferredResult {
	hdr := http.Header{}
	hdr.Set(DeferredHeader, why)
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusServiceUnavailable {
		hdr.Set("Retry-After", d.ttlHdr)
	}
	return DeferredResult{Status: status, Header: hdr, Body: []byte(http.StatusText(status) + "\n"), Done: d.clock.Now()}
}

// resultWriter records a replay's response, its body up to max bytes.
type resultWriter struct {
	hdr     http.Header
	status  int
	body    bytes.Buffer
	max     int64
	tooLong bool
}

func (w *resultWriter) Header() http.Header { return w.hdr }

func (w *resultWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *resultWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.tooLong || int64(w.body.Len()+len(b)) > w.max {
		w.tooLong = true
		w.body.Reset()
		return len(b), nil // the handler goes on; its result is a 502
	}
	return w.body.Write(b)
}

// Flush makes streaming handlers work; the result is stored when they return.
func (w *resultWriter) Flush() {}

func (w *resultWriter) result(done time.Time) DeferredResult {
	if w.tooLong {
		hdr := http.Header{}
		hdr.Set(DeferredHeader, "too-large")
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		return DeferredResult{Status: http.StatusBadGateway, Header: hdr, Body: []byte(http.StatusText(http.StatusBadGateway) + "\n"), Done: done}
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	w.hdr.Del("Content-Length") // the poll's server sets it
	return DeferredResult{Status: status, Header: w.hdr, Body: bytes.Clone(w.body.Bytes()), Done: done}
}
