package redisshare

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Defaults of a [Config].
const (
	DefaultPrefix   = "autoscalelua:windows"
	DefaultTick     = time.Second
	DefaultTopN     = 1000
	DefaultDeadline = 500 * time.Millisecond
)

// ErrInvalidConfig reports a bad setting or option.
var ErrInvalidConfig = errors.New("redisshare: invalid configuration")

// Config holds the settings of a [Publisher] and a [Merger]; the replicas of one
// gateway share them. The zero value of every field means its default.
type Config struct {
	// Prefix starts every key: Prefix+":w:"+replica holds a replica's payload,
	// Prefix+":members" the set of replicas that published. Default [DefaultPrefix].
	Prefix string
	// Replica names this replica; unique among the replicas. Default: the host name
	// and a random suffix.
	Replica string
	// Tick is the period of [Publisher.Run]. Default [DefaultTick].
	Tick time.Duration
	// TTL is how long a payload counts after it was published: a replica that stops
	// publishing drops out of the merge this long after its last payload (Redis
	// expires the key, by Redis's clock). Default 3 × Tick.
	TTL time.Duration
	// TopN is how many windows per scope a replica publishes, the busiest by count;
	// the others are summed under [OtherKey]. Default [DefaultTopN].
	TopN int
	// Spans are the spans a replica summarizes each window over (0 is the whole
	// window); a merged view answers a read over another span with the shortest
	// published span at least as long, else the whole window, else the longest. List
	// the spans the policy reads. Default {0}.
	Spans []time.Duration
	// Deadline bounds each publish and each fetch, through the context: go-redis
	// applies a context's deadline to the network only when the client's
	// Options.ContextTimeoutEnabled is set (otherwise its ReadTimeout applies), so set
	// it. Default [DefaultDeadline].
	Deadline time.Duration
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replica == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		c.Replica = host + "-" + hex.EncodeToString(b[:])
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.TTL == 0 {
		c.TTL = 3 * c.Tick
	}
	if c.TopN == 0 {
		c.TopN = DefaultTopN
	}
	if len(c.Spans) == 0 {
		c.Spans = []time.Duration{0}
	}
	c.Spans = slices.Clone(c.Spans)
	slices.Sort(c.Spans)
	c.Spans = slices.Compact(c.Spans)
	if c.Deadline == 0 {
		c.Deadline = DefaultDeadline
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	d := c.withDefaults()
	if d.Tick < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("tick %v is below 10ms", c.Tick))
	}
	if d.TTL < d.Tick {
		errs = append(errs, fmt.Errorf("TTL %v is below the tick %v", c.TTL, d.Tick))
	}
	if c.TopN < 0 {
		errs = append(errs, fmt.Errorf("top N %d is negative", c.TopN))
	}
	if len(d.Spans) > 16 || slices.ContainsFunc(d.Spans, func(s time.Duration) bool { return s < 0 }) {
		errs = append(errs, fmt.Errorf("spans %v: at most 16, none negative", c.Spans))
	}
	if d.Deadline < 0 {
		errs = append(errs, fmt.Errorf("deadline %v is negative", c.Deadline))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Option configures a [Publisher] or a [Merger].
type Option func(*options) error

type options struct{ logger *slog.Logger }

// WithLogger sets the logger of state changes. Default [slog.Default], the default
// logger everywhere in this module.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.logger = l
		return nil
	}
}

func build(client redis.UniversalClient, reg *metrics.Registry, cfg Config, opts []Option) (Config, options, error) {
	var errs []error
	if client == nil {
		errs = append(errs, fmt.Errorf("%w: nil redis client", ErrInvalidConfig))
	}
	if reg == nil {
		errs = append(errs, fmt.Errorf("%w: nil registry", ErrInvalidConfig))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
		}
	}
	return cfg.withDefaults(), o, errors.Join(errs...)
}

func payloadKey(c *Config, replica string) string { return c.Prefix + ":w:" + replica }

// Publisher publishes a replica's windows to Redis each tick. It is safe for concurrent
// use.
type Publisher struct {
	client redis.UniversalClient
	reg    *metrics.Registry
	cfg    Config
	log    *slog.Logger

	mu     sync.Mutex
	failed bool
}

// NewPublisher returns a publisher of reg's windows. It starts no goroutine: call
// [Publisher.Run].
func NewPublisher(client redis.UniversalClient, reg *metrics.Registry, cfg Config, opts ...Option) (*Publisher, error) {
	c, o, err := build(client, reg, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{client: client, reg: reg, cfg: c, log: o.logger}, nil
}

// Payload returns the replica's payload as of now: what [Publisher.Publish] sends.
func (p *Publisher) Payload(now time.Time) []byte {
	s := summarize(p.reg, p.cfg.Replica, now, p.cfg.Spans, p.cfg.TopN)
	return s.encode()
}

// Publish sends the replica's payload as of now, with the TTL, and returns its size.
// A failure is logged once per change of state and returned.
func (p *Publisher) Publish(ctx context.Context, now time.Time) (int, error) {
	b := p.Payload(now)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Deadline)
	defer cancel()
	members := p.cfg.Prefix + ":members"
	_, err := p.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, payloadKey(&p.cfg, p.cfg.Replica), b, p.cfg.TTL)
		pipe.SAdd(ctx, members, p.cfg.Replica)
		pipe.PExpire(ctx, members, 10*p.cfg.TTL)
		return nil
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && !p.failed:
		p.failed = true
		p.log.LogAttrs(ctx, slog.LevelWarn, "redisshare: cannot publish windows", slog.String("error", err.Error()))
	case err == nil && p.failed:
		p.failed = false
		p.log.LogAttrs(ctx, slog.LevelInfo, "redisshare: publishing windows again")
	}
	if err != nil {
		return len(b), fmt.Errorf("redisshare: publish: %w", err)
	}
	return len(b), nil
}

// Run publishes every tick, as of the registry's clock, until ctx ends, and returns
// ctx's error.
func (p *Publisher) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	for {
		p.Publish(ctx, p.reg.Clock().Now())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Skipped is a replica whose payload a fetch could not merge, and why.
type Skipped struct {
	Replica string
	Err     error
}

// Merger reads every replica's payload and merges them into a [View], the reader the
// leader's loop decides on (autoscale.WithReader(merger.Reader)). When Redis fails, it
// falls back to the local registry's windows, and says so in the view's sources. It is
// safe for concurrent use.
type Merger struct {
	client redis.UniversalClient
	local  *metrics.Registry
	cfg    Config
	log    *slog.Logger

	mu       sync.Mutex
	lastAt   time.Time
	last     autoscale.Reader
	fallback bool
	skipped  map[string]string // replica → the reason last logged
	stats    MergerStats
}

// MergerStats counts what a [Merger]'s reader did.
type MergerStats struct {
	// Fallback is true while the reader serves the local windows.
	Fallback bool
	// Reads counts the views [Merger.Reader] fetched; Failures those that failed and
	// fell back to the local windows; Fallbacks the entries into fallback.
	Reads, Failures, Fallbacks uint64
	// Skipped counts replica payloads that could not be merged.
	Skipped uint64
	// Replicas is the number of replicas the last view merged.
	Replicas int
}

// Stats returns the reader's counts.
func (m *Merger) Stats() MergerStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Fallback = m.fallback
	return s
}

// NewMerger returns a merger; local is this replica's registry, read when Redis fails.
func NewMerger(client redis.UniversalClient, local *metrics.Registry, cfg Config, opts ...Option) (*Merger, error) {
	c, o, err := build(client, local, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Merger{client: client, local: local, cfg: c, log: o.logger, skipped: map[string]string{}}, nil
}

// Fetch reads and merges the payloads of every live replica. Replicas whose payload has
// expired are dropped from the members set; payloads that cannot be merged (a newer
// format, a wrong type under the key, corrupt bytes) are listed in [View.Skipped] and
// logged once per replica and reason.
func (m *Merger) Fetch(ctx context.Context, now time.Time) (*View, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Deadline)
	defer cancel()
	members := m.cfg.Prefix + ":members"
	names, err := m.client.SMembers(ctx, members).Result()
	if err != nil {
		return nil, fmt.Errorf("redisshare: fetch members: %w", err)
	}
	slices.Sort(names)
	pipe := m.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.Get(ctx, payloadKey(&m.cfg, n))
	}
	if _, err := pipe.Exec(ctx); err != nil && !isReply(err) {
		return nil, fmt.Errorf("redisshare: fetch payloads: %w", err)
	}
	blobs := make([][]byte, len(cmds))
	errs := make([]error, len(cmds))
	var gone []any
	for i, c := range cmds {
		blobs[i], errs[i] = c.Bytes()
		if errors.Is(errs[i], redis.Nil) {
			gone = append(gone, names[i])
		}
	}
	if len(gone) > 0 {
		m.client.SRem(ctx, members, gone...) // dropped after their TTL; a failure is harmless
	}
	v := mergePayloads(now, names, blobs, errs)
	m.noteSkipped(ctx, v.Skipped)
	return v, nil
}

// mergePayloads decodes and merges the replicas' payloads (errs[i]: the read of
// blobs[i] failed; redis.Nil: it expired) into a view.
func mergePayloads(now time.Time, names []string, blobs [][]byte, errs []error) *View {
	v := &View{now: now, scopes: map[metrics.Scope]*scopeView{}}
	acc := map[metrics.Scope]map[string]map[time.Duration]*accum{}
	for i, b := range blobs {
		err := errs[i]
		if errors.Is(err, redis.Nil) {
			continue
		}
		var p payload
		if err == nil {
			p, err = decode(b)
		}
		if err != nil {
			v.Skipped = append(v.Skipped, Skipped{Replica: names[i], Err: err})
			continue
		}
		merge(acc, &p)
		v.sources = append(v.sources, names[i])
	}
	for sc, keys := range acc {
		sv := &scopeView{byKey: map[string]int{}}
		for k, spans := range keys {
			ks := keyView{key: k}
			for sp, a := range spans {
				ks.spans = append(ks.spans, spanSnap{span: sp, snap: a.snapshot()})
			}
			slices.SortFunc(ks.spans, func(a, b spanSnap) int { return cmp.Compare(a.span, b.span) })
			sv.keys = append(sv.keys, ks)
		}
		slices.SortFunc(sv.keys, func(a, b keyView) int { return cmp.Compare(a.key, b.key) })
		for i, k := range sv.keys {
			sv.byKey[k.key] = i
		}
		v.scopes[sc] = sv
	}
	return v
}

func (m *Merger) noteSkipped(ctx context.Context, sk []Skipped) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := map[string]string{}
	for _, s := range sk {
		now[s.Replica] = s.Err.Error()
		if m.skipped[s.Replica] != s.Err.Error() {
			m.log.LogAttrs(ctx, slog.LevelWarn, "redisshare: skipping a replica's windows",
				slog.String("replica", s.Replica), slog.String("error", s.Err.Error()))
		}
	}
	m.skipped = now
}

func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Reader returns the merged view as of now, fetched at most once per now (the loop's
// live and shadow policies read the same one): the [View] of [Merger.Fetch], or, when
// the fetch fails, the local registry's windows, with the sources saying so. It is the
// function autoscale.WithReader takes; it blocks at most the Deadline.
func (m *Merger) Reader(now time.Time) autoscale.Reader {
	m.mu.Lock()
	if m.last != nil && m.lastAt.Equal(now) {
		r := m.last
		m.mu.Unlock()
		return r
	}
	m.mu.Unlock()
	var r autoscale.Reader
	v, err := m.Fetch(context.Background(), now)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Reads++
	if err != nil {
		m.stats.Failures++
		if !m.fallback {
			m.stats.Fallbacks++
			m.fallback = true
			m.log.LogAttrs(context.Background(), slog.LevelWarn, "redisshare: cannot fetch the replicas' windows, deciding on local windows",
				slog.String("error", err.Error()))
		}
		r = localView{RegistryReader: autoscale.NewRegistryReader(m.local, now), sources: []string{m.cfg.Replica + " (local fallback)"}}
	} else {
		m.stats.Skipped += uint64(len(v.Skipped))
		m.stats.Replicas = len(v.sources)
		if m.fallback {
			m.fallback = false
			m.log.LogAttrs(context.Background(), slog.LevelInfo, "redisshare: deciding on merged windows again")
		}
		r = v
	}
	m.last, m.lastAt = r, now
	return r
}

// localView is the local registry, named as the fallback source.
type localView struct {
	autoscale.RegistryReader
	sources []string
}

func (l localView) Sources() []string { return l.sources }

var (
	_ autoscale.ScopeReader  = (*View)(nil)
	_ autoscale.SourceReader = (*View)(nil)
	_ autoscale.SourceReader = localView{}
)

// View is the merge of the replicas' windows at one time; it reads as the windows of
// one gateway that saw every replica's requests. Counts, errors, bytes, user values,
// in-flight requests and concurrency are sums; the latency figures come from the merged
// histograms, so they are what one window holding every replica's observations would
// report, within [metrics.HistogramRelativeError] of the exact figures; Max is exact;
// MaxInFlight is the sum of the replicas' maxima, an upper bound. Span is the longest
// of the replicas' spans and Rate is Count over it. A View is immutable and safe for
// concurrent use.
type View struct {
	now     time.Time
	scopes  map[metrics.Scope]*scopeView
	sources []string
	// Skipped lists the replicas whose payload could not be merged.
	Skipped []Skipped
}

type scopeView struct {
	keys  []keyView
	byKey map[string]int
}

type keyView struct {
	key   string
	spans []spanSnap // sorted by span; 0 is the whole window
}

type spanSnap struct {
	span time.Duration
	snap metrics.Snapshot
}

// Sources lists the replicas merged, sorted.
func (v *View) Sources() []string { return v.sources }

// Snapshot returns the merged summary of (scope, key) over the published span that
// answers span (see [Config.Spans]); false when no replica has that window.
func (v *View) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	sv, ok := v.scopes[scope]
	if !ok {
		return metrics.Snapshot{}, false
	}
	i, ok := sv.byKey[key]
	if !ok {
		return metrics.Snapshot{}, false
	}
	return sv.keys[i].pick(span), true
}

func (k *keyView) pick(span time.Duration) metrics.Snapshot {
	var whole *spanSnap
	for i := range k.spans {
		s := &k.spans[i]
		if s.span == 0 {
			whole = s
			continue
		}
		if span > 0 && s.span >= span {
			return s.snap
		}
	}
	if whole != nil {
		return whole.snap
	}
	return k.spans[len(k.spans)-1].snap
}

// Keys lists the keys of scope, sorted.
func (v *View) Keys(scope metrics.Scope) []string {
	sv, ok := v.scopes[scope]
	if !ok {
		return nil
	}
	out := make([]string, len(sv.keys))
	for i, k := range sv.keys {
		out[i] = k.key
	}
	return out
}

// Scope yields every key of scope and its snapshot over span, in key order.
func (v *View) Scope(scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot] {
	return func(yield func(string, metrics.Snapshot) bool) {
		sv, ok := v.scopes[scope]
		if !ok {
			return
		}
		for i := range sv.keys {
			if !yield(sv.keys[i].key, sv.keys[i].pick(span)) {
				return
			}
		}
	}
}

// accum merges one (scope, key, span) across replicas.
type accum struct {
	e    entry
	hist metrics.Histogram
}

func merge(acc map[metrics.Scope]map[string]map[time.Duration]*accum, p *payload) {
	for _, sc := range p.scopes {
		keys := acc[sc.scope]
		if keys == nil {
			keys = map[string]map[time.Duration]*accum{}
			acc[sc.scope] = keys
		}
		for _, k := range sc.keys {
			spans := keys[k.key]
			if spans == nil {
				spans = map[time.Duration]*accum{}
				keys[k.key] = spans
			}
			for i, e := range k.entries {
				a := spans[p.spans[i]]
				if a == nil {
					a = new(accum)
					spans[p.spans[i]] = a
				}
				addEntry(&a.e, e)
				a.hist.MergeBinary(e.hist) // checked by decode
			}
		}
	}
}

func (a *accum) snapshot() metrics.Snapshot {
	e := &a.e
	s := metrics.Snapshot{
		Span: e.span, Count: e.count, Errors: e.errors, Canceled: e.canceled, Rejected: e.rejected,
		Bytes: e.bytes, Value: e.value, InFlight: e.inFlight, MaxInFlight: e.maxInFlight,
		Concurrency: e.concurrency, Max: a.hist.Max(), Mean: a.hist.Mean(),
	}
	var q [3]time.Duration
	a.hist.Quantiles([]float64{0.5, 0.9, 0.99}, q[:])
	s.P50, s.P90, s.P99 = q[0], q[1], q[2]
	if e.span > 0 {
		s.Rate = float64(e.count) / e.span.Seconds()
	}
	if served := e.count - e.rejected; served > 0 {
		s.ErrorRate = float64(e.errors) / float64(served)
	}
	return s
}
