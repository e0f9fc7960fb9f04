package redislimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func newLimiter(t testing.TB, c redis.UniversalClient, cfg Config, opts ...Option) *Limiter {
	t.Helper()
	l, err := New(c, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestNewErrors(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		c    redis.UniversalClient
		cfg  Config
		opts []Option
		want []string
	}{
		{"nil client", nil, Config{}, nil, []string{"nil redis client"}},
		{"bad settings", c, Config{Refresh: time.Millisecond, Replicas: -1}, nil, []string{"refresh 1ms", "replicas -1"}},
		{"deadline", c, Config{Refresh: time.Second, Deadline: 2 * time.Second}, nil, []string{"deadline 2s"}},
		{"ttl", c, Config{Refresh: time.Second, HeartbeatTTL: time.Millisecond}, nil, []string{"heartbeat TTL"}},
		{"options", c, Config{}, []Option{WithClock(nil), WithLogger(nil)}, []string{"nil clock", "nil logger"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.c, tc.cfg, tc.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	l := newLimiter(t, c, Config{})
	for _, lim := range []Limit{{Rate: -1, Burst: 1}, {Rate: 1}, {Rate: 1, Burst: 1, MaxBatch: -1}} {
		if err := l.SetLimit("a", lim); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("SetLimit(%+v) = %v, want ErrInvalidConfig", lim, err)
		}
	}
	if err := l.SetLimit("", Limit{Rate: 1, Burst: 1}); err == nil {
		t.Error("an empty tenant was accepted")
	}
}

func TestUnlimitedAndBlocked(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	l := newLimiter(t, c, Config{})
	if ok, _ := l.AllowN("free", time.Time{}, 1); !ok {
		t.Error("a tenant without a limit was denied")
	}
	if err := l.SetLimit("blocked", Limit{}); err != nil {
		t.Fatal(err)
	}
	if ok, ra := l.AllowN("blocked", time.Time{}, 1); ok || ra != time.Minute {
		t.Errorf("blocked tenant: %v, %v; want denied for a minute", ok, ra)
	}
	l.RemoveLimit("blocked")
	if ok, _ := l.AllowN("blocked", time.Time{}, 1); !ok {
		t.Error("a tenant whose limit was removed was denied")
	}
}

// spend takes one token at a time from tenant until denied, and returns how many.
func spend(l *Limiter, tenant string) int {
	n := 0
	for {
		if ok, _ := l.AllowN(tenant, time.Time{}, 1); !ok {
			return n
		}
		n++
	}
}

func TestLeaseBatches(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	l := newLimiter(t, c, Config{Refresh: 5 * time.Second})
	if err := l.SetLimit("a", Limit{Rate: 1, Burst: 100, MaxBatch: 10}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := spend(l, "a"); got != 0 {
		t.Fatalf("%d tokens before the first refresh, want 0", got)
	}
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The first lease is MaxBatch; the next asks for twice the demand since, capped.
	for i, want := range []int{10, 10, 10} {
		if got := spend(l, "a"); got != want {
			t.Fatalf("lease %d: spent %d tokens, want %d", i, got, want)
		}
		if err := l.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	l.AllowN("a", time.Time{}, 3) // 3 of the 10 held now
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Demand since the last refresh was 3 and it holds 7, more than twice 3: it asks
	// for nothing.
	if got := spend(l, "a"); got != 7 {
		t.Errorf("after a partial spend: %d tokens, want the 7 held", got)
	}
	st := l.Stats()
	if st.Fallback || st.Replicas != 1 || st.ScriptLoads != 1 || st.Granted != 40 {
		t.Errorf("stats %+v, want healthy, 1 replica, the scripts loaded once, 40 granted", st)
	}
	// Redis's bucket holds what was not granted.
	tokens, err := c.HGet(ctx, DefaultPrefix+":b:a", "tokens").Float64()
	if err != nil || tokens < 60 || tokens > 62 {
		t.Errorf("bucket holds %v tokens (%v), want 100 - 40 plus a second's refill at most", tokens, err)
	}
}

func TestHeartbeatCountsReplicas(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	ls := make([]*Limiter, 3)
	for i := range ls {
		ls[i] = newLimiter(t, srv.Client(), Config{Replica: string(rune('a' + i)), Refresh: 5 * time.Second})
	}
	for _, l := range ls {
		if err := l.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := ls[2].Stats().Replicas; n != 3 {
		t.Errorf("third replica counts %d replicas, want 3", n)
	}
}

// TestFallbackAndConverge pauses Redis: the refresh gives up at the deadline and the
// limiter refills locally at limit/N; once Redis answers again, the first refresh is
// cluster-wide again.
func TestFallbackAndConverge(t *testing.T) {
	srv := redistest.Start(t)
	clk := metrics.NewManualClock(time.Unix(1000, 0))
	ctx := context.Background()
	ls := make([]*Limiter, 3)
	for i := range ls {
		ls[i] = newLimiter(t, srv.Client(), Config{Replica: string(rune('a' + i)), Refresh: 100 * time.Millisecond, Deadline: 50 * time.Millisecond}, WithClock(clk))
		if err := ls[i].SetLimit("a", Limit{Rate: 300, Burst: 30}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second round's heartbeats count all three
		for _, l := range ls {
			if err := l.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	l := ls[0]
	spend(l, "a")
	srv.Pause()
	start := time.Now()
	err := l.Refresh(ctx)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("a refresh against a hanging redis took %v, want about the 50ms deadline", took)
	}
	if !errors.Is(err, ErrDeadline) {
		t.Fatalf("refresh against a paused redis: %v, want ErrDeadline", err)
	}
	clk.Advance(time.Second)
	if err := l.Refresh(ctx); err == nil {
		t.Fatal("a refresh succeeded while redis hangs")
	}
	// A second at 300/3 rps, capped by the local burst 30/3.
	if got := spend(l, "a"); got != 10 {
		t.Errorf("local share after a second: %d tokens, want 10 (burst 30 / 3 replicas)", got)
	}
	clk.Advance(50 * time.Millisecond)
	if err := l.Refresh(ctx); err == nil {
		t.Fatal("a refresh succeeded while redis hangs")
	}
	if got := spend(l, "a"); got != 5 {
		t.Errorf("local share after 50ms: %d tokens, want 5 (300 / 3 × 0.05)", got)
	}
	st := l.Stats()
	if !st.Fallback || st.Fallbacks != 1 || st.Replicas != 3 {
		t.Errorf("stats %+v, want in fallback, entered once, 3 replicas", st)
	}
	srv.Resume()
	l.wg.Wait() // the abandoned call returns once redis runs again
	if err := l.Refresh(ctx); err != nil {
		t.Fatalf("first refresh after redis returned: %v", err)
	}
	if st := l.Stats(); st.Fallback || st.Fallbacks != 1 {
		t.Errorf("stats %+v, want out of fallback after one refresh", st)
	}
}

func TestKillAndRestart(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := newLimiter(t, srv.Client(), Config{Refresh: 5 * time.Second})
	if err := l.SetLimit("a", Limit{Rate: 100, Burst: 100, MaxBatch: 5}); err != nil {
		t.Fatal(err)
	}
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := l.Refresh(ctx); err == nil || !l.Stats().Fallback {
		t.Fatalf("refresh with redis killed: %v, stats %+v; want an error and fallback", err, l.Stats())
	}
	l.wg.Wait()
	srv.Restart()
	if err := l.Refresh(ctx); err != nil {
		t.Fatalf("refresh after the restart: %v", err)
	}
	if st := l.Stats(); st.Fallback || st.ScriptLoads != 2 {
		t.Errorf("stats %+v, want healthy with the scripts loaded again (2 loads)", st)
	}
}

func TestBadInput(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	clk := metrics.NewManualClock(time.Unix(1000, 0))
	l := newLimiter(t, c, Config{Refresh: 5 * time.Second, Replicas: 2}, WithClock(clk))
	for _, tn := range []string{"wrongtype", "newer", "good"} {
		if err := l.SetLimit(tn, Limit{Rate: 10, Burst: 10}); err != nil {
			t.Fatal(err)
		}
	}
	c.Set(ctx, DefaultPrefix+":b:wrongtype", "not a hash", 0)
	c.HSet(ctx, DefaultPrefix+":b:newer", "v", 99, "tokens", 1000, "ts", 1)
	if err := l.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("refresh: %v; want WRONGTYPE and ErrNewerFormat", err)
	}
	// The good tenant is cluster-wide; the other two refill locally at 10/N = 10/1.
	clk.Advance(time.Second)
	l.Refresh(ctx)
	for tn, want := range map[string]int{"wrongtype": 10, "newer": 10, "good": 10} {
		if got := spend(l, tn); got != want {
			t.Errorf("%s: %d tokens, want %d", tn, got, want)
		}
	}
	if st := l.Stats(); st.KeyErrors != 4 || st.Fallback {
		t.Errorf("stats %+v, want 4 key errors (2 keys × 2 refreshes) and no global fallback", st)
	}
	// The newer bucket was not overwritten.
	if v, _ := c.HGet(ctx, DefaultPrefix+":b:newer", "v").Int(); v != 99 {
		t.Errorf("the newer bucket's version is %d, want it left at 99", v)
	}

	// SCRIPT FLUSH: the next refresh loads the scripts again.
	loads := l.Stats().ScriptLoads
	c.ScriptFlush(ctx)
	c.Del(ctx, DefaultPrefix+":b:wrongtype", DefaultPrefix+":b:newer")
	if err := l.Refresh(ctx); err != nil {
		t.Fatalf("refresh after SCRIPT FLUSH: %v", err)
	}
	if got := l.Stats().ScriptLoads; got != loads+1 {
		t.Errorf("script loads %d, want %d", got, loads+1)
	}
	// The heartbeat set under a wrong type: counted, N kept.
	c.Set(ctx, DefaultPrefix+":replicas", "x", 0)
	if err := l.Refresh(ctx); err != nil {
		t.Fatalf("refresh with a broken heartbeat set: %v", err)
	}
	if st := l.Stats(); st.Replicas != 1 {
		t.Errorf("replicas %d, want the last counted 1", st.Replicas)
	}
}

// TestClockSkew runs three replicas whose clocks are 2 s apart: Redis's buckets run on
// Redis's clock, so the skew changes nothing of what they are granted, and local shares
// depend on each clock's own elapsed time, not on its offset.
func TestClockSkew(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	base := time.Unix(5000, 0)
	var ls []*Limiter
	var clks []*metrics.ManualClock
	for i, off := range []time.Duration{-2 * time.Second, 0, 2 * time.Second} {
		clk := metrics.NewManualClock(base.Add(off))
		clks = append(clks, clk)
		l := newLimiter(t, srv.Client(), Config{Replica: string(rune('a' + i)), Refresh: 5 * time.Second}, WithClock(clk))
		l.SetLimit("a", Limit{Rate: 1, Burst: 30, MaxBatch: 30})
		ls = append(ls, l)
	}
	total := 0
	for round := 0; round < 3; round++ {
		for _, l := range ls {
			if err := l.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			total += spend(l, "a")
		}
	}
	// 30 of burst plus at most a few tokens of refill over the test's real time.
	if total < 30 || total > 33 {
		t.Errorf("skewed replicas were granted %d tokens, want 30 (+ real-time refill)", total)
	}
	srv.Kill()
	for i, l := range ls {
		l.Refresh(ctx)
		clks[i].Advance(3 * time.Second)
		l.Refresh(ctx)
		if got := spend(l, "a"); got != 1 {
			t.Errorf("replica %d: local share %d over 3 s, want 1 (1 rps / 3, 3 s)", i, got)
		}
	}
}

// TestTokenBudget: a budget of tokens, whose requests ask for many at once: an ask
// larger than a batch is granted at the next refresh, an ask larger than the burst
// never.
func TestTokenBudget(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	l := newLimiter(t, srv.Client(), Config{Refresh: 5 * time.Second})
	if err := l.SetLimit("llm", Limit{Rate: 1000, Burst: 5000, MaxBatch: 100}); err != nil {
		t.Fatal(err)
	}
	l.Refresh(ctx)
	if ok, _ := l.AllowN("llm", time.Time{}, 2000); ok {
		t.Fatal("an ask of 2000 tokens passed on a batch of 100")
	}
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.AllowN("llm", time.Time{}, 2000); !ok {
		t.Errorf("an ask of 2000 tokens denied after the refresh that saw it")
	}
	l.AllowN("llm", time.Time{}, 6000)
	l.Refresh(ctx)
	if ok, _ := l.AllowN("llm", time.Time{}, 6000); ok {
		t.Error("an ask above the burst passed")
	}
}
