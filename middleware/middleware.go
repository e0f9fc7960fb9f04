package middleware

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/metrics/otelmetrics"
)

// Keys classify a request: each non-empty key names the window of its scope that the
// request is recorded into.
type Keys struct {
	// Route is the key in [metrics.ScopeRoute].
	Route string
	// Tenant is the key in [metrics.ScopeTenant].
	Tenant string
	// Model is the key in [metrics.ScopeModel] (AI gateways: the model asked for).
	Model string
	// Priority is the request's priority class; higher is more important. Admission
	// control uses it; it is not a window key.
	Priority int
}

// A Classifier derives a request's keys. It runs on every request, before the handler,
// and must be cheap and safe for concurrent use.
type Classifier func(r *http.Request) Keys

// Default header names read by [DefaultClassifier].
const (
	TenantHeader = "X-Tenant-ID"
	ModelHeader  = "X-Model"
)

// DefaultClassifier returns a classifier that takes the route from the pattern the
// request matched ([http.Request.Pattern], set when the middleware is mounted inside a
// [http.ServeMux] route) or else from the URL path, the tenant from the X-Tenant-ID
// header and the model from the X-Model header.
//
// The URL path is unbounded in cardinality (/users/1, /users/2, ...); the registry's LRU
// bounds the memory, but routes keyed by pattern read far better. Mount the middleware
// per route (mux.Handle(pattern, mw(h))), or pass a classifier of your own.
func DefaultClassifier() Classifier { return HeaderClassifier(TenantHeader, ModelHeader) }

// HeaderClassifier is [DefaultClassifier] with other header names; an empty name skips
// that key.
func HeaderClassifier(tenantHeader, modelHeader string) Classifier {
	tenant := textproto.CanonicalMIMEHeaderKey(tenantHeader)
	model := textproto.CanonicalMIMEHeaderKey(modelHeader)
	return func(r *http.Request) Keys {
		k := Keys{Route: r.Pattern}
		if k.Route == "" {
			k.Route = r.URL.Path
		}
		if tenant != "" {
			if v := r.Header[tenant]; len(v) > 0 {
				k.Tenant = v[0]
			}
		}
		if model != "" {
			if v := r.Header[model]; len(v) > 0 {
				k.Model = v[0]
			}
		}
		return k
	}
}

// Valuer is a ResponseWriter that knows a quantity of the request it served, such as
// the tokens an LLM request used (package llm's gateway writer is one). When the
// writer the middleware is given is a Valuer, the quantity becomes the Value of the
// request's observation in its route, tenant and model windows, read after the next
// handler returns.
type Valuer interface {
	ObservationValue() float64
}

// IsServerError is the default failure predicate: a status of 500 or more.
func IsServerError(_ *http.Request, status int) bool { return status >= 500 }

// A Hook runs on every request after classification and before admission (the access
// phase of OpenResty, where a Lua on_request runs): it returns the request's keys,
// changed or not, and a verdict that may reject it. It must be safe for concurrent use
// and must not block. (Keys go in and out by value so that they stay on the stack.)
type Hook func(r *http.Request, k Keys) (Keys, Verdict)

// Verdict is a [Hook]'s answer. The zero value lets the request through unchanged.
type Verdict struct {
	// Status, when not zero, rejects the request with this status (400..599).
	Status int
	// RetryAfter, when positive, is sent as a Retry-After header (whole seconds,
	// rounded up) with a rejection.
	RetryAfter time.Duration
	// Body is the rejection's body; empty means the status text.
	Body string
	// Header holds headers to set on the response, rejected or not.
	Header http.Header
}

type config struct {
	registry   *metrics.Registry
	admission  *Admission
	hook       Hook
	onResponse ResponseHook
	classify   Classifier
	isFailure  func(r *http.Request, status int) bool
	clock      metrics.Clock
	logger     *slog.Logger
	meter      metric.MeterProvider
	deferrer   *Deferrer
	writers    *sync.Pool // of *responseWriter
}

// ErrInvalidConfig is wrapped by the errors of [New] and [NewAdmission] for bad
// settings.
var ErrInvalidConfig = errors.New("middleware: invalid config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// An Option configures [New]. A nil argument is an error of New.
type Option func(*config) error

// WithRegistry sets the registry requests are recorded into. The default is a new
// registry on the middleware's clock, reachable through [Handler.Registry].
func WithRegistry(r *metrics.Registry) Option {
	return func(c *config) error {
		if r == nil {
			return configError("nil registry")
		}
		c.registry = r
		return nil
	}
}

// WithClassifier sets how requests are classified. The default is [DefaultClassifier].
func WithClassifier(f Classifier) Option {
	return func(c *config) error {
		if f == nil {
			return configError("nil classifier")
		}
		c.classify = f
		return nil
	}
}

// WithFailure sets which responses count as failures (errors in the windows). The
// default is [IsServerError]. A request whose client went away counts as canceled, and a
// handler that panics as a failure, whatever this says.
func WithFailure(f func(r *http.Request, status int) bool) Option {
	return func(c *config) error {
		if f == nil {
			return configError("nil failure predicate")
		}
		c.isFailure = f
		return nil
	}
}

// WithAdmission puts an [Admission] in front of the handler: requests it rejects get a
// 503 or 429 with a Retry-After and a short fixed text, and are recorded in their
// windows as [metrics.OutcomeRejected]. The default admits everything.
func WithAdmission(a *Admission) Option {
	return func(c *config) error {
		if a == nil {
			return configError("nil admission")
		}
		c.admission = a
		return nil
	}
}

// WithDeferrer makes the middleware defer requests of d's deferrable routes and
// classes that the admission turns away for want of capacity (202 and a Location; see
// [Deferrer]), and serve the polls of those Locations (requests under
// [DeferConfig.Path], after the classifier and the hook, which give the tenant a poll
// is checked against). d replays into every handler this middleware wraps; run its
// workers with [Deferrer.Run]. Without an admission nothing is deferred.
func WithDeferrer(d *Deferrer) Option {
	return func(c *config) error {
		if d == nil {
			return configError("nil deferrer")
		}
		c.deferrer = d
		return nil
	}
}

// WithHook sets a hook run on every request before admission. The default is none.
func WithHook(h Hook) Option {
	return func(c *config) error {
		if h == nil {
			return configError("nil hook")
		}
		c.hook = h
		return nil
	}
}

// WithClock sets the clock that times requests. The default is the registry's clock.
func WithClock(clk metrics.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return configError("nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithLogger sets the logger. The default is [slog.Default], as everywhere in this
// module, so that a failure is never silent for want of a logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return configError("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMeterProvider exports the registry's windows as OpenTelemetry gauges through mp
// (see package otelmetrics), for as long as mp lives. A failure to register is an
// error of [New].
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return configError("nil meter provider")
		}
		c.meter = mp
		return nil
	}
}

// New returns a middleware that records every request into the registry's windows: the
// route's, the tenant's and the model's (each when its key is not empty), and, for
// streamed responses, the route's time to first byte in [metrics.ScopeTTFB]. It reports
// every bad option at once, wrapped in [ErrInvalidConfig], and a failure to register
// the OpenTelemetry gauges ([WithMeterProvider]).
//
// Per request it classifies, reads the clock twice, takes a response-writer wrapper from
// a pool, and records into each window without locks: no allocation.
func New(opts ...Option) (func(http.Handler) http.Handler, error) {
	var c config
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, configError("nil option"))
			continue
		}
		if err := o(&c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.registry == nil {
		reg, err := metrics.NewRegistry(registryClock(c.clock)...)
		if err != nil {
			return nil, fmt.Errorf("middleware: %w", err)
		}
		c.registry = reg
	}
	if c.clock == nil {
		c.clock = c.registry.Clock()
	}
	if c.classify == nil {
		c.classify = DefaultClassifier()
	}
	if c.isFailure == nil {
		c.isFailure = IsServerError
	}
	c.writers = &sync.Pool{New: func() any { return new(responseWriter) }}
	if c.meter != nil {
		if _, err := otelmetrics.Register(c.meter.Meter("github.com/autoscalelua/autoscalelua/middleware"), c.registry); err != nil {
			return nil, fmt.Errorf("middleware: export windows to OpenTelemetry: %w", err)
		}
	}
	return func(next http.Handler) http.Handler {
		h := &Handler{next: next, cfg: c}
		if c.deferrer != nil {
			h.deferIdx = c.deferrer.attach(h)
		}
		return h
	}, nil
}

func registryClock(clk metrics.Clock) []metrics.Option {
	if clk == nil {
		return nil
	}
	return []metrics.Option{metrics.WithClock(clk)}
}

// Wrap wraps h with [New](opts...).
func Wrap(h http.Handler, opts ...Option) (http.Handler, error) {
	mw, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return mw(h), nil
}

// Handler is the http.Handler that [New] returns around the next handler. It is safe
// for concurrent use.
type Handler struct {
	next     http.Handler
	cfg      config
	deferIdx int // this handler's index in cfg.deferrer
}

// Registry returns the registry the handler records into.
func (h *Handler) Registry() *metrics.Registry { return h.cfg.registry }

// ServeHTTP runs the hook and admission, then records the request around the next
// handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &h.cfg
	keys := c.classify(r)
	start := c.clock.Now()
	if c.hook != nil {
		var v Verdict
		keys, v = c.hook(r, keys)
		setHeaders(w, v.Header)
		if v.Status != 0 {
			h.reject(w, r, keys, start, v.Status, v.RetryAfter, v.Body, "hook")
			return
		}
	}
	d := c.deferrer
	if d != nil && strings.HasPrefix(r.URL.Path, d.cfg.Path) {
		d.ServePoll(w, r, keys.Tenant)
		return
	}
	var permit Permit
	if c.admission != nil {
		var err error
		permit, err = c.admission.Admit(r.Context(), Info{Route: keys.Route, Tenant: keys.Tenant, Model: keys.Model, Priority: keys.Priority, Now: start})
		if err != nil {
			if d != nil && d.deferrable(keys, err) && d.accept(w, r, h.deferIdx, c.registry, keys) {
				if c.onResponse != nil {
					c.onResponse(r, keys, Response{Status: http.StatusAccepted, Latency: c.clock.Now().Sub(start), Rejected: "deferred"})
				}
				return
			}
			if why := OverloadReason(err); why != "" {
				w.Header().Set(OverloadHeader, why)
			}
			h.reject(w, r, keys, start, StatusOf(err), permit.RetryAfter(), "", reasonOf(err))
			return
		}
	}
	h.serve(w, r, keys, start, permit)
}

// serve runs an admitted request (permit is the zero Permit without an admission)
// through the next handler and records it.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, keys Keys, start time.Time, permit Permit) {
	c := &h.cfg
	rerouted := false
	if c.admission != nil {
		rt, md := permit.Rerouted()
		if rt != "" && rt != keys.Route {
			keys.Route = rt
			rerouted = true
			r = r.WithContext(context.WithValue(r.Context(), routeKey{}, rt))
		}
		if md != "" {
			keys.Model = md
		}
	}
	if keys.Model != "" || rerouted {
		// Where the request goes, for a balancer.Proxy behind: after the hook and the
		// admission, which may have re-routed it.
		r = r.WithContext(balancer.WithDestination(r.Context(), balancer.Destination{Route: keys.Route, Model: keys.Model}))
	}

	win := WindowsOf(c.registry, keys)
	win.Start(start)

	rw := c.writers.Get().(*responseWriter)
	rw.reset(w, c.clock, c.onResponse != nil)
	returned := false
	defer func() {
		// A handler that panics (or calls runtime.Goexit) still ends the request: record
		// it as a failure, free its slot, and let the panic go on, its stack intact.
		if returned {
			return
		}
		end := c.clock.Now()
		o := metrics.Observation{Latency: end.Sub(start), Outcome: metrics.OutcomeError, Bytes: rw.bytes}
		win.Done(end, o)
		permit.DoneAt(end, metrics.OutcomeError)
		if c.onResponse != nil {
			c.onResponse(r, keys, Response{Status: http.StatusInternalServerError, Latency: o.Latency, Bytes: rw.bytes, Values: rw.values})
		}
	}()
	h.next.ServeHTTP(rw, r)
	returned = true

	end := c.clock.Now()
	o := metrics.Observation{Latency: end.Sub(start), Bytes: rw.bytes}
	if v, ok := w.(Valuer); ok {
		o.Value = v.ObservationValue()
	}
	switch {
	case r.Context().Err() == context.Canceled:
		o.Outcome = metrics.OutcomeCanceled
	case c.isFailure(r, rw.statusCode()):
		o.Outcome = metrics.OutcomeError
	}
	win.Done(end, o)
	permit.DoneAt(end, o.Outcome)
	if !rw.firstFlush.IsZero() && keys.Route != "" {
		c.registry.Window(metrics.ScopeTTFB, keys.Route).RecordAt(end, metrics.Observation{
			Latency: rw.firstFlush.Sub(start), Outcome: o.Outcome,
		})
	}
	if c.onResponse != nil {
		c.onResponse(r, keys, Response{Status: rw.statusCode(), Latency: o.Latency, Bytes: rw.bytes, Values: rw.values})
	}
	// The wrapper goes back to the pool only when the handler returned normally: a
	// ResponseWriter may not be used after ServeHTTP returns, and a panicking handler's
	// may still be referenced by whoever recovers. It keeps its values' array, cleared.
	rw.reset(nil, nil, false)
	c.writers.Put(rw)
}

// RejectedHeader is set on every response the middleware itself gives to a request it
// turned away, to say why: "shed", "throttled", "queue-full", "queue-timeout",
// "limit", "backoff", "overload", "canceled" or "hook". Like Envoy's x-envoy-overloaded, it lets clients and load
// generators tell load shedding from a failing backend.
const RejectedHeader = "X-Autoscale-Rejected"

func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrShed):
		return "shed"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrQueueFull):
		return "queue-full"
	case errors.Is(err, ErrQueueTimeout):
		return "queue-timeout"
	case errors.Is(err, ErrLimited):
		return "limit"
	case errors.Is(err, ErrBackoff):
		return "backoff"
	case errors.Is(err, ErrOverloaded):
		return "overload"
	}
	return "canceled"
}

// reject answers a request that the hook or admission turned away, with a short fixed
// text (never an error's text), and records it as rejected in its windows.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, keys Keys, now time.Time, status int, retryAfter time.Duration, body, reason string) {
	if status < 400 || status > 599 {
		status = http.StatusServiceUnavailable
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retryAfter.Seconds())), 10))
	}
	if body == "" {
		body = http.StatusText(status)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set(RejectedHeader, reason)
	w.WriteHeader(status)
	n, _ := io.WriteString(w, body+"\n")
	WindowsOf(h.cfg.registry, keys).Reject(now)
	if h.cfg.onResponse != nil {
		h.cfg.onResponse(r, keys, Response{Status: status, Latency: h.cfg.clock.Now().Sub(now), Bytes: int64(n), Rejected: reason})
	}
}

func setHeaders(w http.ResponseWriter, hdr http.Header) {
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
}

type routeKey struct{}

// RouteFrom returns the route an [Admission] re-routed the request to, if it did.
func RouteFrom(ctx context.Context) (string, bool) {
	r, ok := ctx.Value(routeKey{}).(string)
	return r, ok
}
