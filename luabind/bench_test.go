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

// registryReader reads a registry for on_tick benchmarks, as the loop does.
type registryReader struct {
	reg *metrics.Registry
	now time.Time
}

func (r registryReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	w, ok := r.reg.Lookup(scope, key)
	if !ok {
		return metrics.Snapshot{}, false
	}
	return w.SnapshotAt(r.now, span), true
}

func (r registryReader) Keys(scope metrics.Scope) []string { return r.reg.Keys(scope) }

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

func BenchmarkOnTick1000Windows(b *testing.B) {
	start := time.Unix(1_700_000_000, 0)
	clock := metrics.NewManualClock(start)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock), metrics.WithCapacity(2000))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		w := reg.Window(metrics.ScopeBackend, fmt.Sprintf("b%04d", i))
		for j := range 60 {
			w.RecordAt(start.Add(time.Duration(j)*time.Second), metrics.Observation{Latency: time.Duration(1+i%50) * time.Millisecond})
		}
	}
	now := start.Add(60 * time.Second)
	pre := &precomputed{snaps: map[string]metrics.Snapshot{}}
	reader := registryReader{reg, now}
	for _, k := range reg.Keys(metrics.ScopeBackend) {
		pre.snaps[k], _ = reader.Snapshot(metrics.ScopeBackend, k, 0)
		pre.keys = append(pre.keys, k)
	}
	b.Run("reader=precomputed", func(b *testing.B) { benchTick(b, clock, pre, now) })
	b.Run("reader=registry", func(b *testing.B) { benchTick(b, clock, reader, now) })
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

func benchTick(b *testing.B, clock metrics.Clock, reader autoscale.Reader, now time.Time) {
	rt, err := luabind.New(luabind.FromString("tick.lua", tickOver), luabind.WithClock(clock))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	in := &autoscale.Input{Now: now, Tick: time.Second, Metrics: reader,
		Targets: []autoscale.TargetState{{Name: "web", Replicas: 1, Desired: 1, Min: 1, Max: 100}}}
	b.ReportAllocs()
	for b.Loop() {
		acts, err := rt.Decide(context.Background(), in)
		if err != nil || len(acts) != 1 {
			b.Fatal(acts, err)
		}
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
