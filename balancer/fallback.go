package balancer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// ScopeFallback is the registry scope into which a [Proxy] records each fallback,
// keyed by the model that failed: one observation per step down a chain, an error for
// a 5xx or a timeout, a rejection for a 429 or a model with no ready backend. A
// scaling policy reads it as any window (m.scope("fallback", "llama-70b").count).
const ScopeFallback metrics.Scope = "fallback"

// FallbackHeader is set on a response that was served after at least one step down a
// fallback chain. It lists the models that failed, in order, each with its class:
// "llama-70b=429, llama-8b=timeout". The model that served is [ModelHeader]'s.
const FallbackHeader = "X-Autoscale-Fallback"

// ModelHeader is set on a response served after a fallback, to the model that served.
const ModelHeader = "X-Autoscale-Model"

// FallbackClass is why a request moved down a fallback chain.
type FallbackClass uint8

// The classes of failure that move a request down its chain.
const (
	// FallbackRateLimited is a 429 from the backend.
	FallbackRateLimited FallbackClass = iota + 1
	// FallbackServerError is a 5xx from the backend, or a failure to connect.
	FallbackServerError
	// FallbackTimeout is no response headers within [Fallback.Timeout].
	FallbackTimeout
	// FallbackUnavailable is no ready backend for the model: cooled down, ejected,
	// drained, or none at all (scaled to zero). It costs no budget: nothing was sent.
	FallbackUnavailable
)

// String returns "429", "5xx", "timeout" or "unavailable".
func (c FallbackClass) String() string {
	switch c {
	case FallbackRateLimited:
		return "429"
	case FallbackServerError:
		return "5xx"
	case FallbackTimeout:
		return "timeout"
	case FallbackUnavailable:
		return "unavailable"
	}
	return "none"
}

// Fallback configures ordered fallback chains per model for a [Proxy]
// ([WithFallback]): a request for a model with a chain that gets a 429, a 5xx, a
// failure to connect or no response headers within Timeout from the backend it was
// sent to is sent again, to the next model of the chain, as long as nothing of the
// failed response reached the client — which holds for streamed requests as for
// others, since the decision is made on the response's status, before its body. A
// model with no ready backend is skipped at once. The failing backend is cooled down
// ([Pool.Eject] for Cooldown, or a 429's Retry-After when longer), so the next
// requests for its model go to its other backends, or down the chain.
//
// Retries draw on one budget per class of failure (429, 5xx, timeout), as Finagle's
// RetryBudget: every request with a chain deposits Ratio of a token in each, a step
// down costs one, and each balance is capped at Burst and starts full. A request whose
// class's budget is empty gets the failed response as it came.
//
// The request's body is kept, up to MaxBody bytes, to be sent again (through
// [http.Request.GetBody] when set); a larger body goes once, without fallback. With
// [WithSetModel] the body of each step is rewritten to name the step's model instead.
//
// The zero value of each field means its default.
type Fallback struct {
	// Chains maps a model to the models tried after it, in order: {"llama-70b":
	// {"llama-8b", "hosted"}}. A model in a chain may have a chain of its own; only
	// the first model's is followed. Models are backends' [LabelModel] labels.
	Chains map[string][]string
	// Timeout is the most one attempt may wait for response headers before the request
	// moves on (the last attempt then answers 504). Zero means none: the transport's
	// own timeouts apply. Range 0..10 min.
	Timeout time.Duration
	// Cooldown is how long a backend that failed is taken out of rotation. Zero means
	// 5 s; negative means none. A 429's Retry-After, when longer, wins, up to a minute.
	Cooldown time.Duration
	// Ratio is the budget's deposit per request, per class, 0..1. Zero means 0.2: steps
	// down a chain add at most 20% to the load, in each class, in steady state.
	Ratio float64
	// Burst is each budget's cap and starting balance, in steps. Zero means 100.
	Burst int
	// MaxBody is the largest request body kept to send again, in bytes. Zero means
	// 4 MiB.
	MaxBody int64
}

// Validate reports every problem with f.
func (f Fallback) Validate() error {
	var errs []error
	for m, chain := range f.Chains {
		if m == "" {
			errs = append(errs, fmt.Errorf("%w: fallback: empty model", ErrInvalidConfig))
		}
		for _, c := range chain {
			if c == "" || c == m {
				errs = append(errs, fmt.Errorf("%w: fallback: chain of %q names %q", ErrInvalidConfig, m, c))
			}
		}
	}
	if f.Timeout < 0 || f.Timeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("%w: fallback: timeout %v out of [0, 10m]", ErrInvalidConfig, f.Timeout))
	}
	if !(f.Ratio >= 0 && f.Ratio <= 1) {
		errs = append(errs, fmt.Errorf("%w: fallback: ratio %v out of [0, 1]", ErrInvalidConfig, f.Ratio))
	}
	if f.Burst < 0 || f.Burst > 1_000_000 {
		errs = append(errs, fmt.Errorf("%w: fallback: burst %d out of [0, 1000000]", ErrInvalidConfig, f.Burst))
	}
	if f.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("%w: fallback: negative max body %d", ErrInvalidConfig, f.MaxBody))
	}
	return errors.Join(errs...)
}

// WithFallback sets fallback chains per model (see [Fallback]).
func WithFallback(f Fallback) ProxyOption {
	return func(p *Proxy) error {
		if err := f.Validate(); err != nil {
			return err
		}
		fb := &fallbacks{cfg: f, chains: map[string][]string{}}
		if fb.cfg.Cooldown == 0 {
			fb.cfg.Cooldown = 5 * time.Second
		}
		if fb.cfg.Ratio == 0 {
			fb.cfg.Ratio = 0.2
		}
		if fb.cfg.Burst == 0 {
			fb.cfg.Burst = 100
		}
		if fb.cfg.MaxBody == 0 {
			fb.cfg.MaxBody = 4 << 20
		}
		for m, chain := range f.Chains {
			fb.chains[m] = append([]string{m}, chain...)
		}
		fb.deposit, fb.cap = int64(fb.cfg.Ratio*1000), int64(fb.cfg.Burst)*1000
		for i := range fb.budget {
			fb.budget[i].Store(fb.cap)
		}
		p.fb = fb
		return nil
	}
}

// fallbacks is a proxy's settled fallback configuration and its live state.
type fallbacks struct {
	cfg     Fallback
	chains  map[string][]string // each with its first model first
	deposit int64               // milli-steps per request
	cap     int64
	budget  [3]atomic.Int64 // milli-steps, by class (429, 5xx, timeout)
	counts  [5]atomic.Uint64
	denied  atomic.Uint64
}

func (f *fallbacks) depositAll() {
	for i := range f.budget {
		b := &f.budget[i]
		if b.Load() < f.cap {
			if v := b.Add(f.deposit); v > f.cap {
				b.Store(f.cap)
			}
		}
	}
}

// withdraw takes a step from class c's budget.
func (f *fallbacks) withdraw(c FallbackClass) bool {
	if c == FallbackUnavailable {
		return true
	}
	b := &f.budget[c-1]
	for {
		v := b.Load()
		if v < 1000 {
			f.denied.Add(1)
			return false
		}
		if b.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// errFallback is ModifyResponse's answer to a response that moves the request on: the
// reverse proxy then discards it and writes nothing.
var errFallback = errors.New("balancer: fallback")

// errAttemptTimeout ends an attempt that had no response headers within the timeout.
var errAttemptTimeout = fmt.Errorf("balancer: no response headers within the fallback timeout: %w", context.DeadlineExceeded)

// classOf returns the class of a response status, 0 for none.
func classOf(status int) FallbackClass {
	switch {
	case status == http.StatusTooManyRequests:
		return FallbackRateLimited
	case status >= 500:
		return FallbackServerError
	}
	return 0
}

// retryAfter reads a Retry-After of whole seconds, up to a minute.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, time.Minute)
}

// replayBody returns a function that makes a fresh copy of r's body for each attempt,
// or ok false when the body is too large to keep (then first is what was read of it,
// to be sent once ahead of the rest).
func replayBody(r *http.Request, max int64) (body func() (io.ReadCloser, error), first []byte, ok bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() (io.ReadCloser, error) { return http.NoBody, nil }, nil, true, nil
	}
	if r.GetBody != nil {
		return r.GetBody, nil, true, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, nil, false, err
	}
	if int64(len(buf)) > max {
		return nil, buf, false, nil
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }, nil, true, nil
}

// serveChain proxies r down chain (its model first) on pool.
func (p *Proxy) serveChain(w http.ResponseWriter, r *http.Request, st *proxyState, pool *Pool, chain []string) {
	f := p.fb
	var (
		body  func() (io.ReadCloser, error)
		first []byte
		ok    bool
		err   error
	)
	if p.setModel != nil && p.setModel(r, chain[0]) == nil {
		// Each attempt rewrites the body for its model and reads it from the start.
		body, ok = func() (io.ReadCloser, error) { return r.Body, nil }, true
	} else {
		body, first, ok, err = replayBody(r, f.cfg.MaxBody)
	}
	if err != nil {
		// The client's body broke before it was read whole: nothing can be sent.
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	if !ok {
		// Too large to keep: one attempt, with what was read put back ahead of the rest.
		r2 := *r
		r2.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(first), r.Body), r.Body}
		p.serveOnce(w, &r2, st, pool)
		return
	}
	f.depositAll()
	clock := pool.clock
	var failed []string // "model=class", for the header
	ctx := r.Context()  // st
	for i, model := range chain {
		last := i == len(chain)-1
		start := clock.Now()
		st.req.Model, st.req.Now = model, start
		res, err := pool.Pick(&st.req)
		if err != nil {
			if !last {
				failed = p.noteFallback(pool, failed, model, FallbackUnavailable, start)
				continue
			}
			setFallbackHeaders(w, failed, "")
			w.Header().Set("Retry-After", p.retryAfter)
			http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
			return
		}
		if p.setModel != nil && i > 0 {
			p.setModel(r, model)
		}
		b, err := body()
		if err != nil {
			res.Done(Outcome{Err: context.Canceled, At: start})
			http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
			return
		}
		st.backend, st.status, st.err = res.Backend, 0, nil
		st.canFallback, st.fallback, st.retryAfter = !last, 0, 0
		st.headers.Store(false)
		actx, cancel := context.WithCancelCause(ctx)
		var timer *time.Timer
		if f.cfg.Timeout > 0 {
			timer = time.AfterFunc(f.cfg.Timeout, func() {
				if !st.headers.Load() {
					cancel(errAttemptTimeout)
				}
			})
		}
		out := r.WithContext(actx)
		out.Body = b
		if p.setModel == nil {
			out.GetBody = body
		}
		if !last || len(failed) > 0 {
			setFallbackHeaders(w, failed, model)
		}
		p.attempt(w, out, st, res, start)
		if timer != nil {
			timer.Stop()
		}
		cancel(nil)
		if st.fallback == 0 && st.err != nil && r.Context().Err() == nil {
			c := FallbackServerError
			if errors.Is(st.err, errAttemptTimeout) {
				c = FallbackTimeout
			}
			if !last && (c == FallbackTimeout || isDialError(st.err)) && f.withdraw(c) {
				st.fallback = c
			}
		}
		if st.fallback != 0 {
			if f.cfg.Cooldown > 0 {
				// Refused past the ejection limit: the chain goes on anyway.
				pool.Eject(res.Backend.id, max(f.cfg.Cooldown, st.retryAfter))
			}
			failed = p.noteFallback(pool, failed, model, st.fallback, clock.Now())
			continue
		}
		if st.err != nil {
			code := http.StatusBadGateway
			if isTimeout(st.err) {
				code = http.StatusGatewayTimeout
			}
			http.Error(w, http.StatusText(code), code)
		}
		return
	}
}

// attempt sends out to res's backend and ends the attempt. An attempt cut short by
// the fallback timeout ends with st.err errAttemptTimeout.
func (p *Proxy) attempt(w http.ResponseWriter, out *http.Request, st *proxyState, res Result, start time.Time) {
	clock := res.Backend.pool.clock
	ended := false
	defer func() {
		if ended {
			return
		}
		// The copy of the body failed (see ServeHTTP): end the attempt and let the
		// panic go on.
		err := errCopyAborted
		if out.Context().Err() != nil {
			err = context.Canceled
		}
		end := clock.Now()
		res.Done(Outcome{Latency: end.Sub(start), Status: st.status, Err: err, At: end})
	}()
	p.rp.ServeHTTP(w, out)
	ended = true
	if st.err != nil && context.Cause(out.Context()) == errAttemptTimeout {
		st.err = errAttemptTimeout
	}
	end := clock.Now()
	o := Outcome{Latency: end.Sub(start), Status: st.status, Err: st.err, At: end}
	if errors.Is(st.err, errFallback) {
		o.Err = nil // the backend answered: its status says how
	}
	res.Done(o)
}

// noteFallback counts and records a step down from model.
func (p *Proxy) noteFallback(pool *Pool, failed []string, model string, c FallbackClass, now time.Time) []string {
	p.fb.counts[c].Add(1)
	if pool.registry != nil {
		mo := metrics.OutcomeError
		if c == FallbackRateLimited || c == FallbackUnavailable {
			mo = metrics.OutcomeRejected
		}
		pool.registry.Window(ScopeFallback, model).RecordAt(now, metrics.Observation{Outcome: mo})
	}
	return append(failed, model+"="+c.String())
}

func setFallbackHeaders(w http.ResponseWriter, failed []string, model string) {
	h := w.Header()
	if len(failed) == 0 {
		h.Del(FallbackHeader)
		h.Del(ModelHeader)
		return
	}
	h.Set(FallbackHeader, strings.Join(failed, ", "))
	if model != "" {
		h.Set(ModelHeader, model)
	} else {
		h.Del(ModelHeader)
	}
}

// FallbackStats counts what a proxy's fallback chains did.
type FallbackStats struct {
	// RateLimited, ServerErrors, Timeouts and Unavailable count steps down a chain by
	// class.
	RateLimited, ServerErrors, Timeouts, Unavailable uint64
	// Denied counts failures that would have moved down a chain but found their
	// class's budget empty.
	Denied uint64
}
