package redisshare

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var t0 = time.Unix(10_000, 0)

func registry(t testing.TB, clk metrics.Clock, opts ...metrics.Option) *metrics.Registry {
	t.Helper()
	reg, err := metrics.NewRegistry(append([]metrics.Option{metrics.WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func publisher(t testing.TB, c redis.UniversalClient, reg *metrics.Registry, cfg Config) *Publisher {
	t.Helper()
	p, err := NewPublisher(c, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func merger(t testing.TB, c redis.UniversalClient, reg *metrics.Registry, cfg Config) *Merger {
	t.Helper()
	m, err := NewMerger(c, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConfigErrors(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	reg := registry(t, metrics.NewManualClock(t0))
	_, err := NewPublisher(nil, nil, Config{Tick: time.Millisecond, TopN: -1, Spans: []time.Duration{-1}}, WithLogger(nil))
	for _, w := range []string{"nil redis client", "nil registry", "tick 1ms", "top N -1", "spans", "nil logger"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not say %q", err, w)
		}
	}
	if _, err := NewMerger(c, reg, Config{Tick: time.Second, TTL: time.Millisecond}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("TTL below tick: %v", err)
	}
}

// spread records n observations into the union registry and into one of the replica
// registries each, round-robin, and returns the raw latencies.
func spread(rnd *rand.Rand, clk *metrics.ManualClock, union *metrics.Registry, reps []*metrics.Registry, scope metrics.Scope, key string, n int) []time.Duration {
	var raw []time.Duration
	for i := range n {
		o := metrics.Observation{
			Latency: time.Duration(rnd.ExpFloat64() * float64(30*time.Millisecond)),
			Bytes:   int64(rnd.IntN(1000)), Value: float64(rnd.IntN(100)),
		}
		switch rnd.IntN(10) {
		case 0:
			o.Outcome = metrics.OutcomeError
		case 1:
			o.Outcome = metrics.OutcomeRejected
			o.Latency = 0
		}
		if o.Outcome != metrics.OutcomeRejected {
			raw = append(raw, o.Latency)
		}
		union.Window(scope, key).RecordAt(clk.Now(), o)
		reps[i%len(reps)].Window(scope, key).RecordAt(clk.Now(), o)
	}
	return raw
}

// TestMergeExact merges three replicas' windows and compares them with one registry
// that saw every observation (equal: the histograms merge exactly) and with the raw
// latencies (within the histogram's stated error), for default and compact windows.
func TestMergeExact(t *testing.T) {
	t.Run("default", func(t *testing.T) { mergeExact(t, metrics.WindowConfig{}, metrics.HistogramRelativeError) })
	t.Run("compact", func(t *testing.T) {
		mergeExact(t, metrics.WindowConfig{Compact: true}, metrics.CompactRelativeError)
	})
}

func mergeExact(t *testing.T, cfg metrics.WindowConfig, bound float64) {
	srv := redistest.Start(t)
	c := srv.Client()
	clk := metrics.NewManualClock(t0)
	opt := metrics.WithScopeWindow(metrics.ScopeTenant, cfg)
	union := registry(t, clk, opt)
	reps := []*metrics.Registry{registry(t, clk, opt), registry(t, clk, opt), registry(t, clk, opt)}
	rnd := rand.New(rand.NewPCG(3, 4))
	raw := map[string][]time.Duration{}
	for sec := range 20 {
		for _, k := range []string{"a", "b", "c"} {
			raw[k] = append(raw[k], spread(rnd, clk, union, reps, metrics.ScopeTenant, k, 50+sec*10)...)
		}
		clk.Advance(time.Second)
	}
	// In flight: started, not done.
	for i, r := range reps {
		for range i + 1 {
			r.Window(metrics.ScopeTenant, "a").StartAt(clk.Now())
			union.Window(metrics.ScopeTenant, "a").StartAt(clk.Now())
		}
	}
	clk.Advance(500 * time.Millisecond)
	spans := []time.Duration{0, 5 * time.Second}
	ctx := context.Background()
	for i, r := range reps {
		p := publisher(t, c, r, Config{Replica: fmt.Sprint("gw-", i), Spans: spans})
		if _, err := p.Publish(ctx, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	v, err := merger(t, c, reps[0], Config{Spans: spans}).Fetch(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"gw-0", "gw-1", "gw-2"}, v.Sources()); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	want := autoscale.NewRegistryReader(union, clk.Now())
	if d := cmp.Diff(want.Keys(metrics.ScopeTenant), v.Keys(metrics.ScopeTenant)); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	for _, k := range []string{"a", "b", "c"} {
		for _, span := range spans {
			ws, _ := want.Snapshot(metrics.ScopeTenant, k, span)
			gs, ok := v.Snapshot(metrics.ScopeTenant, k, span)
			if !ok {
				t.Fatalf("%s: no merged window", k)
			}
			// MaxInFlight is the sum of the replicas' maxima; Concurrency and Mean are
			// sums of floats in another order.
			opts := cmp.Options{cmpopts.IgnoreFields(metrics.Snapshot{}, "MaxInFlight"), cmpopts.EquateApprox(1e-9, 0)}
			if d := cmp.Diff(ws, gs, opts); d != "" {
				t.Errorf("%s over %v: merged differs from the union window (-union +merged):\n%s", k, span, d)
			}
		}
		// Whole window against the raw observations, within the stated error.
		gs, _ := v.Snapshot(metrics.ScopeTenant, k, 0)
		obs := slices.Clone(raw[k])
		slices.Sort(obs)
		for q, got := range map[float64]time.Duration{0.5: gs.P50, 0.9: gs.P90, 0.99: gs.P99} {
			exact := obs[int(math.Ceil(q*float64(len(obs))))-1]
			if rel := math.Abs(float64(got-exact)) / float64(exact); rel > bound {
				t.Errorf("%s p%v: merged %v, exact %v: relative error %.4f > %.4f", k, q*100, got, exact, rel, bound)
			}
		}
		if gs.Max != obs[len(obs)-1] {
			t.Errorf("%s max: merged %v, exact %v", k, gs.Max, obs[len(obs)-1])
		}
	}
	// A span between the published ones reads the next longer one.
	s3, _ := v.Snapshot(metrics.ScopeTenant, "a", 3*time.Second)
	s5, _ := v.Snapshot(metrics.ScopeTenant, "a", 5*time.Second)
	if s3 != s5 {
		t.Errorf("a 3s read gave %+v, want the 5s span's %+v", s3, s5)
	}
	// The scope read yields what Snapshot does.
	for k, s := range v.Scope(metrics.ScopeTenant, 0) {
		if one, _ := v.Snapshot(metrics.ScopeTenant, k, 0); one != s {
			t.Errorf("Scope and Snapshot disagree on %s", k)
		}
	}
}

// TestTopNOther publishes two windows of five and the rest as one remainder: the
// scope's totals stay exact.
func TestTopNOther(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	reg := registry(t, clk)
	for i, n := range []int{5, 50, 1, 20, 3} {
		for range n {
			reg.Window(metrics.ScopeTenant, fmt.Sprint("t", i)).RecordAt(clk.Now(), metrics.Observation{Latency: time.Millisecond})
		}
	}
	p := summarize(reg, "r", clk.Now(), []time.Duration{0}, 2)
	var keys []string
	counts := map[string]uint64{}
	for _, k := range p.scopes[0].keys {
		keys = append(keys, k.key)
		counts[k.key] = k.entries[0].count
	}
	if d := cmp.Diff([]string{"(other)", "t1", "t3"}, keys); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	if counts["(other)"] != 9 || counts["t1"] != 50 || counts["t3"] != 20 {
		t.Errorf("counts %v, want t1 50, t3 20, (other) 9", counts)
	}
}

// TestPayloadSize states the payload of 1,000 windows: at most 64 KiB.
func TestPayloadSize(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	reg := thousand(t, clk, rand.New(rand.NewPCG(1, 1)))
	b := publisherFor(reg).Payload(clk.Now())
	t.Logf("payload of 1,000 windows: %d bytes", len(b))
	if len(b) > 64<<10 {
		t.Errorf("payload of 1,000 windows is %d bytes, more than 64 KiB", len(b))
	}
	p, err := decode(b)
	if err != nil || len(p.scopes[0].keys) != 1000 {
		t.Fatalf("decode: %v", err)
	}
}

func publisherFor(reg *metrics.Registry) *Publisher {
	return &Publisher{reg: reg, cfg: Config{Replica: "gw-1"}.withDefaults()}
}

// thousand fills a registry with 1,000 tenants' windows over a minute: each tenant a
// few requests per second, latencies spread over two octaves around 40 ms.
func thousand(t testing.TB, clk *metrics.ManualClock, rnd *rand.Rand) *metrics.Registry {
	reg := registry(t, clk)
	for sec := range 60 {
		for i := range 1000 {
			w := reg.Window(metrics.ScopeTenant, fmt.Sprintf("tenant-%04d", i))
			for range 1 + rnd.IntN(3) {
				o := metrics.Observation{Latency: time.Duration((20 + rnd.Float64()*60) * float64(time.Millisecond)), Bytes: 512}
				if rnd.IntN(50) == 0 {
					o.Outcome = metrics.OutcomeError
				}
				w.RecordAt(clk.Now(), o)
			}
		}
		if sec < 59 {
			clk.Advance(time.Second)
		}
	}
	return reg
}

// TestDropOut: a replica that stops publishing drops out of the merge once its
// payload's TTL passes (Redis expires it), and out of the members set.
func TestDropOut(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	clk := metrics.NewManualClock(t0)
	cfg := Config{Tick: 50 * time.Millisecond, TTL: 200 * time.Millisecond}
	ctx := context.Background()
	var pubs []*Publisher
	for i := range 2 {
		reg := registry(t, clk)
		reg.Window(metrics.ScopeRoute, "/").RecordAt(clk.Now(), metrics.Observation{})
		cfg.Replica = fmt.Sprint("gw-", i)
		pubs = append(pubs, publisher(t, c, reg, cfg))
	}
	m := merger(t, c, registry(t, clk), cfg)
	for _, p := range pubs {
		p.Publish(ctx, clk.Now())
	}
	v, _ := m.Fetch(ctx, clk.Now())
	if s, _ := v.Snapshot(metrics.ScopeRoute, "/", 0); s.Count != 2 || len(v.Sources()) != 2 {
		t.Fatalf("count %d from %v, want 2 from both", s.Count, v.Sources())
	}
	start := time.Now()
	for {
		pubs[0].Publish(ctx, clk.Now()) // gw-1 has stopped
		v, err := m.Fetch(ctx, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"gw-0"}, v.Sources()); d == "" {
			if s, _ := v.Snapshot(metrics.ScopeRoute, "/", 0); s.Count != 1 {
				t.Errorf("count %d after gw-1 dropped out, want 1", s.Count)
			}
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("gw-1 still merged %v after its TTL", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond) // Redis expires keys on its own clock
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("gw-1 dropped out after %v, before its 200ms TTL", el)
	}
	if got, _ := c.SMembers(ctx, DefaultPrefix+":members").Result(); !slices.Equal(got, []string{"gw-0"}) {
		t.Errorf("members %v, want gw-1 removed", got)
	}
}

// TestBadInput: a payload of a newer format, a wrong type under a replica's key and
// corrupt bytes are skipped and reported, the others merged; Redis down makes the
// reader fall back to the local windows, saying so in its sources.
func TestBadInput(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	clk := metrics.NewManualClock(t0)
	local := registry(t, clk)
	local.Window(metrics.ScopeRoute, "/").RecordAt(clk.Now(), metrics.Observation{})
	p := publisher(t, c, local, Config{Replica: "good"})
	p.Publish(ctx, clk.Now())
	members := DefaultPrefix + ":members"
	c.SAdd(ctx, members, "newer", "hash", "corrupt")
	newer := append([]byte("ASWS"), FormatVersion+1)
	c.Set(ctx, DefaultPrefix+":w:newer", append(newer, "future bytes"...), time.Minute)
	c.HSet(ctx, DefaultPrefix+":w:hash", "a", "b")
	c.Set(ctx, DefaultPrefix+":w:corrupt", "ASWS\x01garbage", time.Minute)
	m := merger(t, c, local, Config{Replica: "good"})
	v, err := m.Fetch(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"good"}, v.Sources()); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	why := map[string]error{}
	for _, s := range v.Skipped {
		why[s.Replica] = s.Err
	}
	if !errors.Is(why["newer"], ErrNewerFormat) || !errors.Is(why["corrupt"], ErrBadPayload) ||
		why["hash"] == nil || !strings.Contains(why["hash"].Error(), "WRONGTYPE") {
		t.Errorf("skipped %v; want newer: ErrNewerFormat, corrupt: ErrBadPayload, hash: WRONGTYPE", why)
	}

	// Clock skew: a replica 2 s ahead and one 2 s behind publish as of their clocks;
	// both are merged (liveness is Redis's TTL, not the payload's time).
	for i, off := range []time.Duration{2 * time.Second, -2 * time.Second} {
		reg := registry(t, metrics.NewManualClock(t0.Add(off)))
		reg.Window(metrics.ScopeRoute, "/").RecordAt(t0.Add(off), metrics.Observation{})
		publisher(t, c, reg, Config{Replica: fmt.Sprint("skew-", i)}).Publish(ctx, t0.Add(off))
	}
	v, _ = m.Fetch(ctx, clk.Now())
	if s, _ := v.Snapshot(metrics.ScopeRoute, "/", 0); s.Count != 3 || len(v.Sources()) != 3 {
		t.Errorf("with skewed replicas: count %d from %v, want 3 from 3", s.Count, v.Sources())
	}

	// Redis down: the local windows, named as a fallback.
	srv.Kill()
	r := m.Reader(clk.Now())
	sr, ok := r.(autoscale.SourceReader)
	if !ok || !slices.Equal(sr.Sources(), []string{"good (local fallback)"}) {
		t.Fatalf("reader with redis down: %T %v", r, sr)
	}
	if s, ok := r.Snapshot(metrics.ScopeRoute, "/", 0); !ok || s.Count != 1 {
		t.Errorf("fallback reads count %d, want the local 1", s.Count)
	}
	m.Reader(clk.Now().Add(time.Second))
	if st := m.Stats(); !st.Fallback || st.Fallbacks != 1 || st.Failures != 2 || st.Reads != 2 {
		t.Errorf("stats %+v, want in fallback, entered once, 2 failed reads", st)
	}
	if _, err := p.Publish(ctx, clk.Now()); err == nil {
		t.Error("publishing to a killed redis succeeded")
	}
}

// TestLoopDecidesAsOneGateway: a leader fed by three replicas, each seeing a third of a
// 10× step in traffic, decides tick by tick as a single gateway seeing all of it.
func TestLoopDecidesAsOneGateway(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	clk := metrics.NewManualClock(t0)
	union := registry(t, clk)
	reps := []*metrics.Registry{registry(t, clk), registry(t, clk), registry(t, clk)}
	var pubs []*Publisher
	cfg := Config{Spans: []time.Duration{0, 10 * time.Second}}
	for i, r := range reps {
		cfg.Replica = fmt.Sprint("gw-", i)
		pubs = append(pubs, publisher(t, c, r, cfg))
	}
	m := merger(t, c, reps[0], cfg)
	loop := func(opt autoscale.Option) *autoscale.Loop {
		pol, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
			Source: autoscale.Source{Scope: metrics.ScopeRoute, Key: "/api", Signal: autoscale.SignalRate},
			Span:   10 * time.Second, TargetValue: 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		l, err := autoscale.NewLoop(autoscale.WithPolicy(pol), opt, autoscale.WithTargets(autoscale.Target{
			Name: "api", Min: 1, Max: 100,
			Actuator: actuator.Func(func(context.Context, actuator.Request) error { return nil }),
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	single, leader := loop(autoscale.WithRegistry(union)), loop(autoscale.WithReader(m.Reader))
	rnd := rand.New(rand.NewPCG(5, 6))
	scaledUp := false
	for tick := range 40 {
		rps := 30
		if tick >= 10 {
			rps = 300 // the 10× step
		}
		spread(rnd, clk, union, reps, metrics.ScopeRoute, "/api", rps)
		clk.Advance(time.Second)
		for _, p := range pubs {
			if _, err := p.Publish(ctx, clk.Now()); err != nil {
				t.Fatal(err)
			}
		}
		want, err := single.Step(ctx, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, err := leader.Step(ctx, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		wd, gd := want.Decisions[0], got.Decisions[0]
		if wd.Desired != gd.Desired {
			t.Errorf("tick %d: the leader on merged windows wants %d, one gateway %d", tick, gd.Desired, wd.Desired)
		}
		if d := cmp.Diff([]string{"gw-0", "gw-1", "gw-2"}, gd.Sources); d != "" {
			t.Fatalf("tick %d: decision sources (-want +got):\n%s", tick, d)
		}
		scaledUp = scaledUp || gd.Desired > 5
	}
	if !scaledUp {
		t.Error("the step never scaled the target up: the test shows nothing")
	}
}
