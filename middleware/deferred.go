package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// DeferredHeader is set on a deferrer's own responses: "accepted" on the 202 that
// defers a request, "pending" or "running" on a poll's 202, "done" on the stored
// result, and on a result the deferrer made itself, why: "too-large" (the response
// passed MaxResultBytes), "abandoned" (the worker stopped before replaying it),
// "panic" (the handler panicked).
const DeferredHeader = "X-Autoscale-Deferred"

// Defaults of [DeferConfig].
const (
	DefaultDeferPath             = "/_autoscale/deferred/"
	DefaultDeferTTL              = 10 * time.Minute
	DefaultDeferBodyBytes  int64 = 1 << 20
	DefaultDeferResultSize int64 = 1 << 20
	DefaultDeferWorkers          = 4
	DefaultDeferRetry            = 100 * time.Millisecond
	DefaultDeferPollAfter        = time.Second
)

// DeferRoute marks a route deferrable for the priority classes up to MaxPriority.
type DeferRoute struct {
	// Route is a route key as the classifier (and hook) set it; "*" is every route.
	Route string
	// MaxPriority is the highest [Keys.Priority] deferred on the route: requests
	// more important than it are rejected as before, never deferred.
	MaxPriority int
}

// DeferConfig holds a [Deferrer]'s settings. The zero value of each field but Routes
// means its default.
type DeferConfig struct {
	// Routes are the deferrable routes; at least one.
	Routes []DeferRoute
	// Path is the prefix of the Location a deferred request is polled at (the id
	// follows it); it must start and end with "/". Default [DefaultDeferPath].
	Path string
	// MaxRequests and MaxBytes bound the default [MemoryStore] (count, and bytes of
	// requests and results); 0 means [DefaultDeferMaxRequests] and
	// [DefaultDeferMaxBytes]. With [WithDeferStore] they must be 0: the store has
	// its own bounds.
	MaxRequests int
	MaxBytes    int64
	// MaxBodyBytes bounds a deferred request's body; a larger one is not deferred
	// but rejected as admission rejected it. 0 means [DefaultDeferBodyBytes]; at
	// most 1 GiB.
	MaxBodyBytes int64
	// MaxResultBytes bounds a stored response body; a replay whose response is
	// larger gets a 502 result with [DeferredHeader] "too-large". 0 means
	// [DefaultDeferResultSize]; at most 1 GiB.
	MaxResultBytes int64
	// TTL is how long a result is kept after the replay ended; 0 means
	// [DefaultDeferTTL]; at most 7 days.
	TTL time.Duration
	// Workers is how many requests are replayed at once, 1..1024; 0 means
	// [DefaultDeferWorkers]. Each replay still needs the admission's permit.
	Workers int
	// RetryInterval is how long a worker waits before asking the admission again
	// when it turned a replay away; 0 means [DefaultDeferRetry]; 1 ms..1 min.
	RetryInterval time.Duration
	// PollAfter is the Retry-After of a 202 (accepted, pending, running); 0 means
	// [DefaultDeferPollAfter]; 1 s..1 h.
	PollAfter time.Duration
}

// Validate reports every problem with the settings at once, each wrapping
// [ErrInvalidConfig].
func (c DeferConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, configError("deferrer: "+format, args...))
	}
	if len(c.Routes) == 0 {
		bad("no deferrable routes")
	}
	seen := make(map[string]bool, len(c.Routes))
	for _, r := range c.Routes {
		switch {
		case r.Route == "":
			bad("empty route")
		case seen[r.Route]:
			bad("route %q twice", r.Route)
		}
		seen[r.Route] = true
	}
	if c.Path != "" && (len(c.Path) < 2 || c.Path[0] != '/' || c.Path[len(c.Path)-1] != '/') {
		bad("path %q does not start and end with /", c.Path)
	}
	if c.MaxRequests < 0 {
		bad("max requests %d is negative", c.MaxRequests)
	}
	if c.MaxBytes < 0 {
		bad("max bytes %d is negative", c.MaxBytes)
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > 1<<30 {
		bad("max body bytes %d out of [0, 1GiB]", c.MaxBodyBytes)
	}
	if c.MaxResultBytes < 0 || c.MaxResultBytes > 1<<30 {
		bad("max result bytes %d out of [0, 1GiB]", c.MaxResultBytes)
	}
	if c.TTL < 0 || c.TTL > 7*24*time.Hour {
		bad("ttl %v out of [0, 168h]", c.TTL)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		bad("workers %d out of [0, 1024]", c.Workers)
	}
	if c.RetryInterval != 0 && (c.RetryInterval < time.Millisecond || c.RetryInterval > time.Minute) {
		bad("retry interval %v out of [1ms, 1m]", c.RetryInterval)
	}
	if c.PollAfter != 0 && (c.PollAfter < time.Second || c.PollAfter > time.Hour) {
		bad("poll after %v out of [1s, 1h]", c.PollAfter)
	}
	return errors.Join(errs...)
}

// DeferOption configures a [Deferrer]. A nil argument is an error of [NewDeferrer].
type DeferOption func(*Deferrer) error

// WithDeferStore sets where deferred requests and results are kept; the default is a
// [MemoryStore] bounded by DeferConfig.MaxRequests and MaxBytes.
func WithDeferStore(s DeferStore) DeferOption {
	return func(d *Deferrer) error {
		if s == nil {
			return configError("deferrer: nil store")
		}
		d.store = s
		return nil
	}
}

// WithDeferClock sets the clock that stamps requests, times results' TTL and the
// workers' retries; the default is a [metrics.SystemClock].
func WithDeferClock(c metrics.Clock) DeferOption {
	return func(d *Deferrer) error {
		if c == nil {
			return configError("deferrer: nil clock")
		}
		d.clock = c
		return nil
	}
}

// WithDeferLogger sets the logger for store errors and panicking replays; the
// default is [slog.Default].
func WithDeferLogger(l *slog.Logger) DeferOption {
	return func(d *Deferrer) error {
		if l == nil {
			return configError("deferrer: nil logger")
		}
		d.logger = l
		return nil
	}
}

// Deferrer answers requests of deferrable routes and classes that the admission would
// turn away for want of capacity — shed ([ErrShed]), queue full or timed out
// ([ErrQueueFull], [ErrQueueTimeout]), adaptive limit reached ([ErrLimited]) — with
// 202 Accepted and a Location to poll, stores them, and replays them to the next
// handler when capacity frees. It plugs into a middleware with [WithDeferrer], which
// also serves the polls; [Deferrer.Run] runs its workers.
//
// Requests turned away for other reasons are never deferred: a throttled tenant
// ([ErrThrottled]) is over its own rate, and deferring would bypass the throttle; a
// failing backend ([ErrBackoff]) or an overloaded gateway ([ErrOverloaded], whose heap
// the stored bodies would grow) is no spare capacity later either.
//
// # Replay
//
// Each worker claims the oldest pending request and asks the admission for a permit
// under the request's keys, exactly as a live request would (priority classes,
// adaptive limits, shed rules): a replay never takes capacity live traffic of a
// higher class needs, and the lowest classes are the ones usually deferred. When the
// admission says no, the worker asks again every RetryInterval. With a permit the
// request runs through the rest of the middleware (windows, response hook, routing)
// and its response — status, headers, body up to MaxResultBytes — becomes the result,
// kept for TTL after the replay ended. A replay is recorded in its windows like any
// request, and the deferral itself in [metrics.ScopeDeferred] (see there).
//
// # Polls
//
// GET or HEAD on the Location answers 202 with Retry-After while the request is
// pending or running, then the stored result, as often as asked until it expires. An
// id that is unknown, malformed, expired, or was deferred for another tenant (the
// tenant key the admission used) is 404, indistinguishable from each other. Ids are
// 128 bits from crypto/rand, so a Location is a capability that cannot be guessed;
// binding it to the tenant keeps a leaked one from crossing tenants.
//
// # Delivery guarantees
//
// With the default [MemoryStore], a deferred request is replayed at most once: a
// worker claims it before it runs, and nothing retries it after. It may be replayed
// zero times: when the process ends, every pending request and every result is lost,
// and its Location answers 404 from the next process; when [Deferrer.Run] stops with a
// request claimed but not yet admitted, the request gets a 503 result with
// [DeferredHeader] "abandoned" and is never replayed. A request that was running when
// Run stopped has whatever result its handler produced under a canceled context.
// Clients that need exactly-once must make their requests idempotent (an idempotency
// key the backend checks) and resubmit on 404 or "abandoned". A durable [DeferStore]
// (package middleware/redisdefer keeps one on Redis) keeps pending requests across
// restarts; whether it re-offers a request that was
// running when a process died (at least once) or not (at most once) is that store's
// choice and must be its documented guarantee.
//
// A Deferrer is safe for concurrent use.
type Deferrer struct {
	cfg    DeferConfig
	routes map[string]int // route → max priority deferred
	all    bool           // "*" is deferrable
	allMax int
	store  DeferStore
	clock  metrics.Clock
	logger *slog.Logger
	ttlHdr string // PollAfter in whole seconds

	handlers atomic.Pointer[[]*Handler]
	hmu      sync.Mutex // serializes attach
	kick     chan struct{}
	running  atomic.Bool

	stats struct {
		accepted, completed, expired, full, tooLarge, retries, abandoned, storeErrors atomic.Uint64
		pending, running                                                              atomic.Int64
	}
}

// ErrDeferrerRunning is returned by [Deferrer.Run] when it is already running.
var ErrDeferrerRunning = errors.New("middleware: deferrer already running")

// NewDeferrer returns a deferrer with the given settings. It reports every bad setting
// and option at once, wrapped in [ErrInvalidConfig].
func NewDeferrer(cfg DeferConfig, opts ...DeferOption) (*Deferrer, error) {
	d := &Deferrer{kick: make(chan struct{}, 1)}
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, configError("deferrer: nil option"))
			continue
		}
		if err := o(d); err != nil {
			errs = append(errs, err)
		}
	}
	if d.store != nil && (cfg.MaxRequests != 0 || cfg.MaxBytes != 0) {
		errs = append(errs, configError("deferrer: max requests and max bytes bound the memory store; a custom store has its own"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		cfg.Path = DefaultDeferPath
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultDeferBodyBytes
	}
	if cfg.MaxResultBytes == 0 {
		cfg.MaxResultBytes = DefaultDeferResultSize
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultDeferTTL
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultDeferWorkers
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultDeferRetry
	}
	if cfg.PollAfter == 0 {
		cfg.PollAfter = DefaultDeferPollAfter
	}
	d.cfg = cfg
	d.ttlHdr = strconv.FormatInt(retrySeconds(cfg.PollAfter), 10)
	d.routes = make(map[string]int, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if r.Route == "*" {
			d.all, d.allMax = true, r.MaxPriority
			continue
		}
		d.routes[r.Route] = r.MaxPriority
	}
	if d.store == nil {
		s, err := NewMemoryStore(cfg.MaxRequests, cfg.MaxBytes)
		if err != nil {
			return nil, err
		}
		d.store = s
	}
	if d.clock == nil {
		d.clock = metrics.NewSystemClock()
	}
	if d.logger == nil {
		d.logger = slog.Default()
	}
	d.handlers.Store(new([]*Handler))
	return d, nil
}

// Path is the prefix of the Locations the deferrer hands out.
func (d *Deferrer) Path() string { return d.cfg.Path }

// attach registers a handler that defers into d; its index goes with its requests.
func (d *Deferrer) attach(h *Handler) int {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	hs := append(append([]*Handler(nil), *d.handlers.Load()...), h)
	d.handlers.Store(&hs)
	return len(hs) - 1
}

func (d *Deferrer) handler(i int) *Handler {
	hs := *d.handlers.Load()
	if i < 0 || i >= len(hs) {
		return nil
	}
	return hs[i]
}

// deferrable reports whether a request with keys that admission rejected with err
// may be deferred.
func (d *Deferrer) deferrable(keys Keys, err error) bool {
	if !errors.Is(err, ErrShed) && !errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrQueueTimeout) && !errors.Is(err, ErrLimited) {
		return false
	}
	if p, ok := d.routes[keys.Route]; ok {
		return keys.Priority <= p
	}
	return d.all && keys.Priority <= d.allMax
}

// newID returns 128 random bits as 32 hex digits.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// validID reports whether s has the form of an id: 32 lowercase hex digits.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// accept stores r for replay by handler idx and answers 202; false (having written
// nothing) when it cannot be stored, and the caller rejects it as before.
func (d *Deferrer) accept(w http.ResponseWriter, r *http.Request, idx int, reg *metrics.Registry, keys Keys) bool {
	if r.ContentLength > d.cfg.MaxBodyBytes {
		d.stats.tooLarge.Add(1)
		return false
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, d.cfg.MaxBodyBytes+1))
		if err != nil {
			return false // the client went away or sent a broken body
		}
		if int64(len(b)) > d.cfg.MaxBodyBytes {
			d.stats.tooLarge.Add(1)
			return false
		}
		body = b
	}
	now := d.clock.Now()
	req := DeferredRequest{
		ID: newID(), Tenant: keys.Tenant, Keys: keys, Handler: idx,
		Method: r.Method, URL: r.URL.RequestURI(), Host: r.Host, Pattern: r.Pattern, RemoteAddr: r.RemoteAddr,
		Header: r.Header.Clone(), Body: body, Accepted: now,
	}
	if err := d.store.Put(r.Context(), req); err != nil {
		if errors.Is(err, ErrStoreFull) {
			d.stats.full.Add(1)
		} else {
			d.stats.storeErrors.Add(1)
			d.logger.Error("middleware: deferrer: store a request", "err", err)
		}
		if reg != nil && keys.Route != "" {
			reg.Window(metrics.ScopeDeferred, keys.Route).RecordAt(now, metrics.Observation{Outcome: metrics.OutcomeRejected})
		}
		return false
	}
	d.stats.accepted.Add(1)
	d.stats.pending.Add(1)
	if reg != nil && keys.Route != "" {
		reg.Window(metrics.ScopeDeferred, keys.Route).StartAt(now)
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
	hdr := w.Header()
	hdr.Set("Location", d.cfg.Path+req.ID)
	hdr.Set("Retry-After", d.ttlHdr)
	hdr.Set(DeferredHeader, "accepted")
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "Accepted\n")
	return true
}

// ServePoll answers a poll of a Location for tenant (the tenant key the admission
// uses): 202 while pending or running, the result when done, 404 otherwise. The
// middleware calls it for requests under [DeferConfig.Path]; a host that serves polls
// elsewhere calls it with the tenant its classifier gives.
func (d *Deferrer) ServePoll(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	id := ""
	if len(p) > len(d.cfg.Path) && p[:len(d.cfg.Path)] == d.cfg.Path {
		id = p[len(d.cfg.Path):]
	}
	if !validID(id) {
		http.NotFound(w, r)
		return
	}
	e, ok, err := d.store.Get(r.Context(), id)
	if err != nil {
		d.stats.storeErrors.Add(1)
		d.logger.Error("middleware: deferrer: read a result", "err", err)
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	if !ok || e.Tenant != tenant || e.State == DeferredDone && !d.clock.Now().Before(e.Expires) {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	if e.State != DeferredDone {
		state := "pending"
		if e.State == DeferredRunning {
			state = "running"
		}
		hdr.Set("Location", d.cfg.Path+id)
		hdr.Set("Retry-After", d.ttlHdr)
		hdr.Set(DeferredHeader, state)
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, state+"\n")
		return
	}
	for k, vs := range e.Result.Header {
		hdr[k] = append([]string(nil), vs...)
	}
	if hdr.Get(DeferredHeader) == "" {
		hdr.Set(DeferredHeader, "done")
	}
	w.WriteHeader(e.Result.Status)
	w.Write(e.Result.Body)
}

// DeferStats counts a deferrer's requests. Every accepted request is, at any moment,
// pending, running, or completed: Accepted = Pending + Running + Completed.
type DeferStats struct {
	// Accepted counts requests answered 202 and stored; Completed, those whose
	// replay ended and whose result was stored (Abandoned ones included); Expired,
	// results swept after their TTL.
	Accepted, Completed, Expired uint64
	// RejectedFull counts requests the store had no room for; TooLarge, those whose
	// body passed MaxBodyBytes. Both were rejected as the admission rejected them.
	RejectedFull, TooLarge uint64
	// Retries counts the admission's refusals of a replay; Abandoned, requests given
	// a 503 result because Run stopped before their replay was admitted; StoreErrors,
	// failures of the store other than full.
	Retries, Abandoned, StoreErrors uint64
	// Pending and Running are the requests waiting and being replayed now.
	Pending, Running int64
}

// Stats returns the deferrer's counts.
func (d *Deferrer) Stats() DeferStats {
	return DeferStats{
		Accepted: d.stats.accepted.Load(), Completed: d.stats.completed.Load(), Expired: d.stats.expired.Load(),
		RejectedFull: d.stats.full.Load(), TooLarge: d.stats.tooLarge.Load(),
		Retries: d.stats.retries.Load(), Abandoned: d.stats.abandoned.Load(), StoreErrors: d.stats.storeErrors.Load(),
		Pending: d.stats.pending.Load(), Running: d.stats.running.Load(),
	}
}

// Sweep removes the results whose TTL has passed and counts them as expired; the
// workers call it every TTL/8 (between 1 s and 1 min) while [Deferrer.Run] runs.
func (d *Deferrer) Sweep(ctx context.Context) (int, error) {
	n, err := d.store.Sweep(ctx, d.clock.Now())
	d.stats.expired.Add(uint64(max(n, 0)))
	if err != nil {
		d.stats.storeErrors.Add(1)
		return n, fmt.Errorf("middleware: deferrer: sweep: %w", err)
	}
	return n, nil
}
