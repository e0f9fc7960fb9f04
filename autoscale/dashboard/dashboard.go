// Package dashboard serves a live web page of an autoscaling gateway: per target the
// current and desired replicas; for every scope of the registry (routes, models,
// tenants, backends, and any a host records), the busiest keys with their request
// rate, error rate, p99 and requests in flight; per model, for an AI gateway
// ([WithModels]), tokens per second, p99 time to first token, rejections and cost per
// minute; shed and throttled counts; the last decisions with their reasons; the
// actions the loop refused (a policy's typo shows here); and plots of the last minutes
// against clock time, refreshed every second. It is an [http.Handler] to mount in any
// server, as net/http/pprof is; its page, script and styles are embedded, so it needs
// nothing from the network.
//
//	dash, _ := dashboard.New(dashboard.WithLoop(loop), dashboard.WithRegistry(reg))
//	go dash.Run(ctx) // samples the history plotted on the page
//	mux.Handle("/debug/autoscale/", http.StripPrefix("/debug/autoscale", dash))
//
// Besides the page it serves two JSON documents, api/state (the figures now) and
// api/history (the sampled series), for scripts and tests.
package dashboard

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

//go:embed assets
var assets embed.FS

// Source is what the dashboard reads of a scaling loop; *autoscale.Loop satisfies it.
// A Source that is also a [RefusalSource] has its refused actions shown.
type Source interface {
	Targets() []autoscale.TargetState
	Decisions() []autoscale.Decision
}

// RefusalSource is what the dashboard reads of the actions a loop refused;
// *autoscale.Loop satisfies it.
type RefusalSource interface {
	Stats() autoscale.LoopStats
	Refusals() []autoscale.Refusal
}

// Defaults.
const (
	DefaultInterval  = time.Second
	DefaultHistory   = 300 // five minutes at one point a second
	DefaultSpan      = 10 * time.Second
	DefaultDecisions = 20
	DefaultTopKeys   = 10
)

type config struct {
	loop      Source
	registry  *metrics.Registry
	counters  func() map[string]uint64
	clock     metrics.Clock
	interval  time.Duration
	history   int
	span      time.Duration
	decisions int
	topKeys   int
	title     string
	models    *ModelScopes
}

// Option configures a [Dashboard].
type Option func(*config) error

// WithLoop shows a loop's targets and decisions.
func WithLoop(s Source) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("dashboard: nil loop")
		}
		c.loop = s
		return nil
	}
}

// WithRegistry shows the windows of a registry: the busiest keys of each scope.
func WithRegistry(r *metrics.Registry) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("dashboard: nil registry")
		}
		c.registry = r
		return nil
	}
}

// WithCounters shows monotonic counters, such as an admission's shed and throttled
// counts: f returns them by name, and the page plots their rates. f must be safe for
// concurrent use.
func WithCounters(f func() map[string]uint64) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("dashboard: nil counters")
		}
		c.counters = f
		return nil
	}
}

// ModelScopes names the windows of the per-model table of an AI gateway
// ([WithModels]), each keyed by model. The zero value of each field means the scope of
// that name that middleware/llm records into.
type ModelScopes struct {
	// Requests has the model's requests: rate, errors, rejections (budgets and
	// admission), in flight. Default [metrics.ScopeModel].
	Requests metrics.Scope
	// TTFT's latencies are times to first token. Default "ttft".
	TTFT metrics.Scope
	// InputTokens and OutputTokens carry each request's tokens as the observations'
	// Value. Defaults "input_tokens" and "output_tokens".
	InputTokens, OutputTokens metrics.Scope
	// Cost carries each request's price as its Value. Default "cost".
	Cost metrics.Scope
}

func (m ModelScopes) withDefaults() ModelScopes {
	def := func(s *metrics.Scope, d metrics.Scope) {
		if *s == "" {
			*s = d
		}
	}
	def(&m.Requests, metrics.ScopeModel)
	def(&m.TTFT, "ttft")
	def(&m.InputTokens, "input_tokens")
	def(&m.OutputTokens, "output_tokens")
	def(&m.Cost, "cost")
	return m
}

// WithModels adds a per-model table and plots (an AI gateway's): requests per second,
// tokens per second, p99 time to first token, rejections and cost per minute, read
// from the registry's windows named by s.
func WithModels(s ModelScopes) Option {
	return func(c *config) error {
		m := s.withDefaults()
		c.models = &m
		return nil
	}
}

// WithClock sets the clock; the default is the registry's, or the system clock.
func WithClock(clk metrics.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("dashboard: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithInterval sets how often [Dashboard.Run] samples; default 1 s, at least 10 ms.
func WithInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("dashboard: interval %v is below 10ms", d)
		}
		c.interval = d
		return nil
	}
}

// WithHistory sets how many samples are kept; default 300, between 2 and 100,000.
func WithHistory(n int) Option {
	return func(c *config) error {
		if n < 2 || n > 100_000 {
			return fmt.Errorf("dashboard: history %d out of [2, 100000]", n)
		}
		c.history = n
		return nil
	}
}

// WithSpan sets the span of the windows the figures summarize; default 10 s.
func WithSpan(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("dashboard: span %v is not positive", d)
		}
		c.span = d
		return nil
	}
}

// WithTopKeys sets how many keys of each scope (the busiest) are shown; default 10.
func WithTopKeys(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("dashboard: top keys %d is below 1", n)
		}
		c.topKeys = n
		return nil
	}
}

// WithTitle sets the page's title; default "autoscalelua".
func WithTitle(s string) Option {
	return func(c *config) error {
		c.title = s
		return nil
	}
}

// Dashboard is the handler. It is safe for concurrent use.
type Dashboard struct {
	cfg    config
	static http.Handler

	mu      sync.Mutex
	samples []Sample // ring, oldest first after ordering
	next    int
	full    bool
}

// New returns a dashboard. It reports every bad option.
func New(opts ...Option) (*Dashboard, error) {
	c := config{interval: DefaultInterval, history: DefaultHistory, span: DefaultSpan,
		decisions: DefaultDecisions, topKeys: DefaultTopKeys, title: "autoscalelua"}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("dashboard: nil option"))
			continue
		}
		if err := o(&c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.clock == nil {
		if c.registry != nil {
			c.clock = c.registry.Clock()
		} else {
			c.clock = metrics.NewSystemClock()
		}
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return &Dashboard{cfg: c, static: http.FileServerFS(sub), samples: make([]Sample, c.history)}, nil
}

// Run samples the figures at once and then every interval on the dashboard's clock
// ([metrics.Every]) until ctx ends, and returns ctx's error.
func (d *Dashboard) Run(ctx context.Context) error {
	d.Sample(d.cfg.clock.Now())
	return metrics.Every(ctx, d.cfg.clock, d.cfg.interval, func() { d.Sample(d.cfg.clock.Now()) })
}

// KeyStats are a window's figures as the page shows them.
type KeyStats struct {
	Key       string  `json:"key"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"error_rate"`
	P99ms     float64 `json:"p99_ms"`
	InFlight  int64   `json:"in_flight"`
	Rejected  uint64  `json:"rejected"`
}

// ModelStats are a model's figures as the page shows them ([WithModels]).
type ModelStats struct {
	Key        string  `json:"key"`
	RPS        float64 `json:"rps"`
	ErrorRate  float64 `json:"error_rate"`
	InFlight   int64   `json:"in_flight"`
	Rejected   uint64  `json:"rejected"`
	TokensPS   float64 `json:"tokens_per_s"`
	TTFTP99ms  float64 `json:"ttft_p99_ms"`
	CostPerMin float64 `json:"cost_per_min"`
}

// ScopeView is a scope's busiest windows: Keys, by rate, at most the top-keys setting
// of them, out of Total.
type ScopeView struct {
	Scope string     `json:"scope"`
	Total int        `json:"total"`
	Keys  []KeyStats `json:"keys"`
}

// TargetStats are a target's replicas.
type TargetStats struct {
	Name    string `json:"name"`
	Current int    `json:"current"`
	Desired int    `json:"desired"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
}

// Step is one safety step of a decision.
type Step struct {
	Name   string `json:"name"`
	Before int    `json:"before"`
	After  int    `json:"after"`
	Note   string `json:"note,omitempty"`
}

// DecisionView is a decision as the page shows it.
type DecisionView struct {
	Time      time.Time `json:"time"`
	Target    string    `json:"target"`
	Current   int       `json:"current"`
	Desired   int       `json:"desired"`
	Direction string    `json:"direction"`
	Applied   bool      `json:"applied"`
	Why       string    `json:"why"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error,omitempty"`
	Steps     []Step    `json:"steps,omitempty"`
}

// RefusalView is a refused action as the page shows it.
type RefusalView struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Action string    `json:"action"`
	Why    string    `json:"why"`
	Error  string    `json:"error"`
}

// State is the api/state document.
type State struct {
	Title   string        `json:"title"`
	Time    time.Time     `json:"time"`
	Span    float64       `json:"span_seconds"`
	Targets []TargetStats `json:"targets"`
	// Scopes are every scope of the registry, the library's first (route, model,
	// tenant, backend), then the others by name; with [WithModels], those the model
	// table summarizes are in Models instead. Routes and Backends repeat two of them.
	Scopes   []ScopeView `json:"scopes"`
	Routes   []KeyStats  `json:"routes"`
	Backends []KeyStats  `json:"backends"`
	// Models is empty without [WithModels].
	Models    []ModelStats      `json:"models"`
	Counters  map[string]uint64 `json:"counters"`
	Decisions []DecisionView    `json:"decisions"`
	// Refused counts the actions the loop refused; Refusals are the last of them,
	// newest first.
	Refused  uint64        `json:"refused"`
	Refusals []RefusalView `json:"refusals"`
	// PolicyErrors counts the ticks on which the policy failed (a Lua script's
	// mistake among them); LastPolicyError is the last one's text.
	PolicyErrors    uint64 `json:"policy_errors"`
	LastPolicyError string `json:"last_policy_error,omitempty"`
}

// Sample is one point of the api/history document.
type Sample struct {
	Time     int64                  `json:"t"` // Unix milliseconds
	Targets  map[string]TargetStats `json:"targets"`
	Routes   map[string]KeyStats    `json:"routes"`
	Models   map[string]ModelStats  `json:"models,omitempty"`
	Counters map[string]uint64      `json:"counters"`
}

// State returns the figures now.
func (d *Dashboard) State() State {
	now := d.cfg.clock.Now()
	s := State{
		Title:     d.cfg.title,
		Time:      now,
		Span:      d.cfg.span.Seconds(),
		Targets:   d.targets(),
		Scopes:    d.scopes(now),
		Routes:    []KeyStats{},
		Backends:  []KeyStats{},
		Models:    d.modelStats(now),
		Counters:  map[string]uint64{},
		Decisions: []DecisionView{},
		Refusals:  []RefusalView{},
	}
	for _, sc := range s.Scopes {
		switch metrics.Scope(sc.Scope) {
		case metrics.ScopeRoute:
			s.Routes = sc.Keys
		case metrics.ScopeBackend:
			s.Backends = sc.Keys
		}
	}
	if d.cfg.counters != nil {
		s.Counters = d.cfg.counters()
	}
	if d.cfg.loop != nil {
		ds := d.cfg.loop.Decisions()
		// Newest first; a decision that changed nothing is kept only if it was not
		// "unchanged", so the list shows what happened rather than every tick.
		for i := len(ds) - 1; i >= 0 && len(s.Decisions) < d.cfg.decisions; i-- {
			dec := ds[i]
			if dec.Why == autoscale.WhyUnchanged && dec.Policy.Err == "" {
				continue
			}
			v := DecisionView{
				Time: dec.Time, Target: dec.Target, Current: dec.Current, Desired: dec.Desired,
				Direction: string(dec.Direction), Applied: dec.Applied, Why: dec.Why,
				Reason: dec.Policy.Reason, Error: dec.Policy.Err,
			}
			if v.Error == "" {
				v.Error = dec.Actuation.Err
			}
			for _, st := range dec.Steps {
				if st.Clamped() {
					v.Steps = append(v.Steps, Step{st.Name, st.Before, st.After, st.Note})
				}
			}
			s.Decisions = append(s.Decisions, v)
		}
		if rs, ok := d.cfg.loop.(RefusalSource); ok {
			st := rs.Stats()
			s.Refused, s.PolicyErrors, s.LastPolicyError = st.Refused, st.PolicyErrors, st.LastPolicyErr
			refs := rs.Refusals()
			for i := len(refs) - 1; i >= 0 && len(s.Refusals) < d.cfg.decisions; i-- {
				r := refs[i]
				s.Refusals = append(s.Refusals, RefusalView{
					Time: r.Time, Kind: r.Action.Kind(), Action: fmt.Sprintf("%+v", r.Action), Why: r.Why, Error: r.Err,
				})
			}
		}
	}
	return s
}

// targets returns the loop's targets.
func (d *Dashboard) targets() []TargetStats {
	out := []TargetStats{}
	if d.cfg.loop != nil {
		for _, t := range d.cfg.loop.Targets() {
			out = append(out, TargetStats{t.Name, t.Replicas, t.Desired, t.Min, t.Max})
		}
	}
	return out
}

// scopeOrder ranks the library's scopes first, in the order the page shows them.
var scopeOrder = []metrics.Scope{metrics.ScopeRoute, metrics.ScopeModel, metrics.ScopeTenant, metrics.ScopeBackend}

// scopes returns the busiest windows of every scope of the registry but those the
// model table summarizes.
func (d *Dashboard) scopes(now time.Time) []ScopeView {
	out := []ScopeView{}
	if d.cfg.registry == nil {
		return out
	}
	scopes := d.cfg.registry.Scopes()
	rank := func(s metrics.Scope) int {
		if i := slices.Index(scopeOrder, s); i >= 0 {
			return i
		}
		return len(scopeOrder)
	}
	slices.SortStableFunc(scopes, func(a, b metrics.Scope) int { return cmp.Compare(rank(a), rank(b)) })
	var summarized []metrics.Scope // by the model table
	if m := d.cfg.models; m != nil {
		summarized = []metrics.Scope{m.Requests, m.TTFT, m.InputTokens, m.OutputTokens, m.Cost}
	}
	for _, sc := range scopes {
		if slices.Contains(summarized, sc) {
			continue
		}
		keys, total := d.keys(sc, now)
		out = append(out, ScopeView{Scope: string(sc), Total: total, Keys: keys})
	}
	return out
}

// keys returns the busiest windows of a scope, by rate, and how many it holds.
func (d *Dashboard) keys(scope metrics.Scope, now time.Time) ([]KeyStats, int) {
	out := []KeyStats{}
	d.cfg.registry.Range(scope, func(w *metrics.Window) bool {
		sn := w.SnapshotAt(now, d.cfg.span)
		out = append(out, KeyStats{
			Key: w.Key(), RPS: sn.Rate, ErrorRate: sn.ErrorRate,
			P99ms: float64(sn.P99) / float64(time.Millisecond), InFlight: sn.InFlight, Rejected: sn.Rejected,
		})
		return true
	})
	slices.SortFunc(out, func(a, b KeyStats) int {
		if c := cmp.Compare(b.RPS, a.RPS); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out[:min(len(out), d.cfg.topKeys)], len(out)
}

// modelStats returns the busiest models' figures, by rate.
func (d *Dashboard) modelStats(now time.Time) []ModelStats {
	out := []ModelStats{}
	m, reg := d.cfg.models, d.cfg.registry
	if m == nil || reg == nil {
		return out
	}
	span := d.cfg.span
	value := func(scope metrics.Scope, key string) metrics.Snapshot {
		if w, ok := reg.Lookup(scope, key); ok {
			return w.SnapshotAt(now, span)
		}
		return metrics.Snapshot{}
	}
	reg.Range(m.Requests, func(w *metrics.Window) bool {
		k := w.Key()
		sn := w.SnapshotAt(now, span)
		out = append(out, ModelStats{
			Key: k, RPS: sn.Rate, ErrorRate: sn.ErrorRate, InFlight: sn.InFlight, Rejected: sn.Rejected,
			TokensPS:   (value(m.InputTokens, k).Value + value(m.OutputTokens, k).Value) / span.Seconds(),
			TTFTP99ms:  float64(value(m.TTFT, k).P99) / float64(time.Millisecond),
			CostPerMin: value(m.Cost, k).Value / span.Minutes(),
		})
		return true
	})
	slices.SortFunc(out, func(a, b ModelStats) int {
		if c := cmp.Compare(b.RPS, a.RPS); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out[:min(len(out), d.cfg.topKeys)]
}

// Sample records one point of history at now.
func (d *Dashboard) Sample(now time.Time) {
	st := d.State()
	p := Sample{
		Time:     now.UnixMilli(),
		Targets:  make(map[string]TargetStats, len(st.Targets)),
		Routes:   make(map[string]KeyStats, len(st.Routes)),
		Counters: st.Counters,
	}
	for _, t := range st.Targets {
		p.Targets[t.Name] = t
	}
	for _, r := range st.Routes {
		p.Routes[r.Key] = r
	}
	if len(st.Models) > 0 {
		p.Models = make(map[string]ModelStats, len(st.Models))
		for _, m := range st.Models {
			p.Models[m.Key] = m
		}
	}
	d.mu.Lock()
	d.samples[d.next] = p
	d.next = (d.next + 1) % len(d.samples)
	d.full = d.full || d.next == 0
	d.mu.Unlock()
}

// History returns the samples kept, oldest first.
func (d *Dashboard) History() []Sample {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full {
		return slices.Clone(d.samples[:d.next])
	}
	return append(slices.Clone(d.samples[d.next:]), d.samples[:d.next]...)
}

// ServeHTTP serves the page at the mount point's root, api/state, api/history and the
// page's assets. Mount it with [http.StripPrefix].
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch path := strings.TrimPrefix(r.URL.Path, "/"); path {
	case "":
		if !strings.HasSuffix(r.URL.Path, "/") {
			// The page loads its data by relative URLs: it must be served from a
			// path ending in a slash.
			http.Redirect(w, r, strings.SplitN(r.RequestURI, "?", 2)[0]+"/", http.StatusMovedPermanently)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/"
		w.Header().Set("Cache-Control", "no-store")
		d.static.ServeHTTP(w, r2)
	case "api/state":
		writeJSON(w, d.State())
	case "api/history":
		writeJSON(w, struct {
			IntervalMS int64    `json:"interval_ms"`
			Points     []Sample `json:"points"`
		}{d.cfg.interval.Milliseconds(), d.History()})
	case "app.js", "style.css":
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + path
		d.static.ServeHTTP(w, r2)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
