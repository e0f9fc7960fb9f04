package luabind_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// fiveLines is the benchmark's decision: five lines reading the request view.
const fiveLines = `
function on_request(req)
  if req.tenant == "blocked" then return { status = 403 } end
  if req.priority < 0 and req.path == "/slow" then return { status = 429, retry_after = 1 } end
  local len = req.content_length
  if len > 1e7 then return { status = 413 } end
end
`

func benchRequest(b *testing.B, budget time.Duration) {
	rt, err := luabind.New(luabind.FromString("bench.lua", fiveLines),
		luabind.WithLimits(luabind.Limits{RequestBudget: budget}))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := &luabind.Request{Method: "GET", Path: "/checkout", Host: "shop", Tenant: "acme", Route: "/checkout", Priority: 1, ContentLength: 512}
		for pb.Next() {
			if d, _ := rt.OnRequest(ctx, req); d.Reject {
				b.Fatal(d)
			}
		}
	})
	// A budget is wall time: on a saturated machine a descheduled call can overrun it.
	b.ReportMetric(float64(rt.Stats().Total(luabind.HookRequest)), "failures")
}

func BenchmarkOnRequest(b *testing.B) {
	b.Run("budget=none", func(b *testing.B) { benchRequest(b, luabind.NoBudget) })
	b.Run("budget=50ms", func(b *testing.B) { benchRequest(b, 50*time.Millisecond) })
}

const tickOver = `
function on_tick(m, state)
  local total, worst = 0, 0
  for _, k in ipairs(m.keys("backend")) do
    local s = m.backend(k)
    total = total + s.rps
    if s.p99 > worst then worst = s.p99 end
  end
  state.total = total
  return { scale("web", math.max(1, math.ceil(total / 100)), "p99 " .. worst) }
end
`

// tickAggregate decides as tickOver does, with m.sum and m.max in place of the loop.
const tickAggregate = `
function on_tick(m, state)
  local total = m.sum("backend", "rps")
  local worst = m.max("backend", "p99") or 0
  state.total = total
  return { scale("web", math.max(1, math.ceil(total / 100)), "p99 " .. worst) }
end
`

// BenchmarkOnTick1000Windows runs an on_tick that reads the rate and p99 of 1,000
// backend windows, in a Lua loop (script=loop) or with the aggregates m.sum and m.max
// (script=aggregate). precomputed measures luabind alone; registry reads the live
// windows through the loop's reader, the same second again (still) or one second later
// each tick after every window took one more request (moving, what the loop sees; the
// recording is not timed).
func BenchmarkOnTick1000Windows(b *testing.B) {
	start := time.Unix(1_700_000_000, 0)
	clock := metrics.NewManualClock(start)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock), metrics.WithCapacity(2000))
	if err != nil {
		b.Fatal(err)
	}
	var windows []*metrics.Window
	for i := range 1000 {
		w := reg.Window(metrics.ScopeBackend, fmt.Sprintf("b%04d", i))
		for j := range 60 {
			w.RecordAt(start.Add(time.Duration(j)*time.Second), metrics.Observation{Latency: time.Duration(1+i%50) * time.Millisecond})
		}
		windows = append(windows, w)
	}
	now := start.Add(60 * time.Second)
	pre := &precomputed{snaps: map[string]metrics.Snapshot{}}
	reader := autoscale.NewRegistryReader(reg, now)
	for _, k := range reg.Keys(metrics.ScopeBackend) {
		pre.snaps[k], _ = reader.Snapshot(metrics.ScopeBackend, k, 0)
		pre.keys = append(pre.keys, k)
	}
	if a, b2 := decideOnce(b, tickOver, pre), decideOnce(b, tickAggregate, pre); a != b2 {
		b.Fatalf("the scripts disagree: %v and %v", a, b2)
	}
	for _, script := range []struct{ name, src string }{{"loop", tickOver}, {"aggregate", tickAggregate}} {
		b.Run("script="+script.name, func(b *testing.B) {
			b.Run("reader=precomputed", func(b *testing.B) {
				benchTick(b, clock, script.src, func(int) autoscale.Reader { return pre })
			})
			b.Run("reader=registry/still", func(b *testing.B) {
				benchTick(b, clock, script.src, func(int) autoscale.Reader { return reader })
			})
			b.Run("reader=registry/moving", func(b *testing.B) {
				benchTick(b, clock, script.src, func(i int) autoscale.Reader {
					b.StopTimer()
					defer b.StartTimer()
					now = now.Add(time.Second)
					for j, w := range windows {
						w.RecordAt(now, metrics.Observation{Latency: time.Duration(1+(i+j)%50) * time.Millisecond})
					}
					return autoscale.NewRegistryReader(reg, now)
				})
			})
		})
	}
}

// decideOnce runs src's on_tick once over r and returns its action.
func decideOnce(b *testing.B, src string, r autoscale.Reader) autoscale.Action {
	rt, err := luabind.New(luabind.FromString("tick.lua", src))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	acts, err := rt.Decide(context.Background(), &autoscale.Input{Now: time.Unix(1_700_000_060, 0), Tick: time.Second, Metrics: autoscale.NewSnapshot(time.Unix(1_700_000_060, 0), r),
		Targets: []autoscale.TargetState{{Name: "web", Replicas: 1, Desired: 1, Min: 1, Max: 100}}})
	if err != nil || len(acts) != 1 {
		b.Fatal(acts, err)
	}
	return acts[0]
}

// BenchmarkOnTickParts takes BenchmarkOnTick1000Windows's script apart over the same
// 1,000 precomputed snapshots, to show what each Lua operation per window costs: the
// ipairs loop over m.keys alone, then m.backend(k) in it, then one field read, then
// two (the whole script). The differences are gopher-lua's price of a Go function
// call and of a userdata field read through __index; ns/window is ns/op over 1,000.
func BenchmarkOnTickParts(b *testing.B) {
	pre := &precomputed{snaps: map[string]metrics.Snapshot{}}
	for i := range 1000 {
		k := fmt.Sprintf("b%04d", i)
		pre.keys = append(pre.keys, k)
		pre.snaps[k] = metrics.Snapshot{Count: uint64(i), Rate: float64(i), P99: time.Duration(1+i%50) * time.Millisecond}
	}
	clock := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	for _, part := range []struct{ name, body string }{
		{"loop", "n = n + 1"},
		{"snapshot", "local s = m.backend(k)"},
		{"one_field", "local s = m.backend(k) n = n + s.rps"},
		{"two_fields", "local s = m.backend(k) n = n + s.rps + s.p99"},
	} {
		src := fmt.Sprintf(`function on_tick(m, state)
  local n = 0
  for _, k in ipairs(m.keys("backend")) do %s end
  state.n = n
  return scale("web", 1, "parts")
end
`, part.body)
		b.Run(part.name, func(b *testing.B) {
			rt, err := luabind.New(luabind.FromString("parts.lua", src), luabind.WithClock(clock))
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			in := &autoscale.Input{Now: clock.Now(), Tick: time.Second, Metrics: autoscale.NewSnapshot(clock.Now(), pre),
				Targets: []autoscale.TargetState{{Name: "web", Replicas: 1, Desired: 1, Min: 1, Max: 100}}}
			b.ReportAllocs()
			for b.Loop() {
				if acts, err := rt.Decide(context.Background(), in); err != nil || len(acts) != 1 {
					b.Fatal(acts, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/window")
		})
	}
}

// precomputed is a Reader over snapshots taken once, to measure luabind alone.
type precomputed struct {
	snaps map[string]metrics.Snapshot
	keys  []string
}

func (p *precomputed) Snapshot(_ metrics.Scope, key string, _ time.Duration) (metrics.Snapshot, bool) {
	s, ok := p.snaps[key]
	return s, ok
}

func (p *precomputed) Keys(metrics.Scope) []string { return p.keys }

// benchTick runs src's on_tick b.N times, reading the metrics of reader(i) on tick i.
func benchTick(b *testing.B, clock metrics.Clock, src string, reader func(i int) autoscale.Reader, opts ...luabind.Option) {
	rt, err := luabind.New(luabind.FromString("tick.lua", src), append([]luabind.Option{luabind.WithClock(clock)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	tick := func(i int) {
		r := reader(i)
		in := &autoscale.Input{Now: clock.Now(), Tick: time.Second, Metrics: autoscale.NewSnapshot(clock.Now(), r),
			Targets: []autoscale.TargetState{{Name: "web", Replicas: 1, Desired: 1, Min: 1, Max: 100}}}
		acts, err := rt.Decide(context.Background(), in)
		if err != nil || len(acts) != 1 {
			b.Fatal(acts, err)
		}
	}
	// Two ticks first: a window makes its read cache on its first read, once in its
	// life, which a short run would otherwise count as every tick's cost.
	tick(0)
	tick(1)
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tick(i + 2)
	}
}

// script500 returns a script of about 500 lines.
func script500() string {
	var sb strings.Builder
	for i := range 122 {
		fmt.Fprintf(&sb, "local function helper%d(x)\n  local y = x * %d + 1\n  return y %% 7\nend\n", i, i)
	}
	sb.WriteString(tickOver)
	sb.WriteString("function self_test() assert(helper3(2) == 0) end\n")
	return sb.String()
}

func BenchmarkReload500Lines(b *testing.B) {
	src := luabind.FromString("big.lua", script500())
	if n := strings.Count(src.Code, "\n"); n < 500 {
		b.Fatalf("script has %d lines", n)
	}
	rt, err := luabind.New(src)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := rt.Reload(src); err != nil {
			b.Fatal(err)
		}
	}
}
