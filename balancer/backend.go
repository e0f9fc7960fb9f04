package balancer

import (
	"fmt"
	"maps"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// MaxWeight is the largest weight a backend may have.
const MaxWeight = 1_000_000

// Endpoint describes a backend as a discovery source reports it. It is a plain value;
// [Pool.Update] validates it.
type Endpoint struct {
	// ID names the backend uniquely within its pool; it keys the backend's metrics
	// window (scope [metrics.ScopeBackend]) and the consistent-hash ring. Required.
	ID string
	// URL is the backend's base URL, scheme http or https, with a host. Required.
	URL string
	// Weight is the backend's relative weight, 0..[MaxWeight]. Zero means 1, so that
	// Endpoint{ID, URL} is a backend of ordinary weight; to drain a backend set Drain
	// or call [Pool.SetWeight] with 0.
	Weight int
	// Drain gives the backend weight 0: it stays in the pool, finishes what it has,
	// and receives no new requests.
	Drain bool
	// Labels describe the backend to pickers and scripts: model, tier, cost, zone...
	// The pool keeps a copy.
	Labels map[string]string
}

func (e Endpoint) weight() int {
	switch {
	case e.Drain:
		return 0
	case e.Weight == 0:
		return 1
	}
	return e.Weight
}

func (e Endpoint) validate() (*url.URL, error) {
	if e.ID == "" {
		return nil, fmt.Errorf("%w: empty id (url %q)", ErrInvalidEndpoint, e.URL)
	}
	if e.Weight < 0 || e.Weight > MaxWeight {
		return nil, fmt.Errorf("%w: %q: weight %d out of [0, %d]", ErrInvalidEndpoint, e.ID, e.Weight, MaxWeight)
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidEndpoint, e.ID, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: %q: url %q: scheme must be http or https", ErrInvalidEndpoint, e.ID, e.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %q: url %q has no host", ErrInvalidEndpoint, e.ID, e.URL)
	}
	return u, nil
}

// Backend is one member of a [Pool] with its live state: requests in flight, a
// peak-EWMA of latency, consecutive-failure counters, ejection state and a metrics
// window. A Backend is made by [Pool.Update] and keeps its state across snapshots for as
// long as its id stays in the pool (a change of URL makes a new Backend).
//
// The accessors are cheap (one atomic load each, except [Backend.PeakLatency]) so that a
// picker, a Lua pick function or a dashboard may read them on every request. A Backend
// is safe for concurrent use; it must not be copied.
type Backend struct {
	// What Pick and Done touch comes first, to share cache lines.
	inFlight atomic.Int64
	// Consecutive failures, reset by a success (Envoy's consecutive_5xx and
	// consecutive_gateway_failure).
	consec5xx atomic.Int32
	consecGw  atomic.Int32
	peak      *metrics.PeakLatency // &peakv unless the pool has its own decay
	window    *metrics.Window
	pool      *Pool
	peakv     metrics.PeakLatency // the zero value decays with metrics.DefaultDecay

	id     string
	url    *url.URL
	labels atomic.Pointer[map[string]string]

	base     atomic.Int64 // weight from Update
	override atomic.Int64 // weight from SetWeight, -1 for none
	eligible atomic.Bool  // in the current snapshot's ready set
	removed  atomic.Bool

	// Written under the pool's mutex, read anywhere.
	ejectedUntil atomic.Int64 // ns; 0 when not ejected
	ejections    atomic.Int32 // the back-off multiplier: passive ejections not yet forgiven
	since        atomic.Int64 // ns; start of slow start, 0 when not ramping
	activeDown   atomic.Bool  // the active health check says down
	hcCount      atomic.Int32 // active checks: consecutive results against the current state
	loadReport   atomic.Pointer[LoadReport]
	loadWindow   atomic.Pointer[metrics.Window]
}

// ID returns the backend's id.
func (b *Backend) ID() string { return b.id }

// URL returns the backend's base URL. The caller must not modify it.
func (b *Backend) URL() *url.URL { return b.url }

// Labels returns the backend's labels. The map is shared: the caller must not modify it.
func (b *Backend) Labels() map[string]string { return *b.labels.Load() }

// Label returns one label, "" when absent.
func (b *Backend) Label(key string) string { return (*b.labels.Load())[key] }

// InFlight returns the requests picked and not yet done.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// PeakLatency returns the backend's peak-sensitive moving average of latency at now
// (Finagle's peak EWMA, see [metrics.PeakLatency]), decayed for the time since its last
// sample; 0 before the first sample. It is the "EWMA latency" shown to Lua scripts.
func (b *Backend) PeakLatency(now time.Time) time.Duration { return b.peak.ValueAt(now) }

// Window returns the backend's metrics window: count, error rate, latency quantiles.
func (b *Backend) Window() *metrics.Window { return b.window }

// Weight returns the backend's configured weight: the last [Pool.SetWeight] if any,
// else the [Endpoint]'s. 0 means drained. Slow start does not change it.
func (b *Backend) Weight() int {
	if w := b.override.Load(); w >= 0 {
		return int(w)
	}
	return int(b.base.Load())
}

// Healthy reports whether the backend was eligible for new requests in the pool's
// current snapshot: weight above 0, not ejected, not failing active health checks.
func (b *Backend) Healthy() bool { return b.eligible.Load() }

// Ejected reports whether the backend is ejected at now, and until when.
func (b *Backend) Ejected(now time.Time) (bool, time.Time) {
	u := b.ejectedUntil.Load()
	if u == 0 || u <= now.UnixNano() {
		return false, time.Time{}
	}
	return true, time.Unix(0, u)
}

// Load returns the last load report read by an active health check, or nil.
func (b *Backend) Load() *LoadReport { return b.loadReport.Load() }

// LoadWindow returns the window into which active health checks record the load
// reports' utilization (see the package documentation), or nil before the first report.
func (b *Backend) LoadWindow() *metrics.Window { return b.loadWindow.Load() }

// String returns the backend's id.
func (b *Backend) String() string { return b.id }

func newLabels(m map[string]string) *map[string]string {
	c := maps.Clone(m)
	if c == nil {
		c = map[string]string{}
	}
	return &c
}

// reportLoad stores r as the backend's latest load report, stamped now, and records
// its utilization into the backend's load window.
func (b *Backend) reportLoad(p *Pool, r LoadReport, latency time.Duration) {
	now := p.clock.Now()
	r.At = now
	b.loadReport.Store(&r)
	b.loadWindowOf(p).RecordAt(now, metrics.Observation{Latency: latency, Value: r.Utilization})
}

func (b *Backend) loadWindowOf(p *Pool) *metrics.Window {
	if w := b.loadWindow.Load(); w != nil {
		return w
	}
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	if w := b.loadWindow.Load(); w != nil {
		return w
	}
	var w *metrics.Window
	if p.registry != nil {
		w = p.registry.Window(ScopeBackendLoad, b.id)
	} else {
		w, _ = metrics.NewWindow(p.windowCfg, p.clock)
	}
	b.loadWindow.Store(w)
	return w
}
