package luabind_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// loadScript picks the backend with the shortest queue among those with a load
// report, and answers "none" (a bad answer, so the pool's own choice) when none has
// one. It refuses (answers "bad") a view whose fields disagree with each other.
const loadScript = `
function pick(req, backends)
  local best, bestq
  for i, b in ipairs(backends) do
    if (b.queue == nil) ~= (b.load_age == nil) or (b.kv_cache == nil) ~= (b.queue == nil) then return "bad" end
    if b.queue and (bestq == nil or b.queue < bestq) then best, bestq = b.id, b.queue end
  end
  if req.path == "/age" then
    for _, b in ipairs(backends) do
      if b.id == "b2" then return (b.load_age == 2.5 and b.kv_cache == 0.25) and "b2" or "b1" end
    end
  end
  return best or "none"
end`

func loadPool(t testing.TB) (*balancer.Pool, *metrics.ManualClock) {
	t.Helper()
	clock := metrics.NewManualClock(time.Unix(100, 0))
	pool, err := balancer.New(balancer.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "b1", URL: "http://10.0.0.1"}, {ID: "b2", URL: "http://10.0.0.2"}, {ID: "b3", URL: "http://10.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	return pool, clock
}

func pickPath(t *testing.T, pool *balancer.Pool, path string) string {
	t.Helper()
	hr, err := http.NewRequest("GET", "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := &balancer.Request{HTTP: hr}
	res, err := pool.Pick(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Done(balancer.Outcome{})
	return res.Backend.ID()
}

func TestPickSeesLoadReports(t *testing.T) {
	pool, clock := loadPool(t)
	rt := newRT(t, loadScript, luabind.WithClock(clock))
	pool.SetPickFunc(rt.BalancerPick(0))
	// No reports: "none" is a bad answer, counted, and the pool chooses.
	pickPath(t, pool, "/")
	if st := rt.Stats(); st.Total(luabind.HookPick) != 1 {
		t.Fatalf("without reports: %d pick failures, want 1 (the script's \"none\")", st.Total(luabind.HookPick))
	}
	for id, q := range map[string]int64{"b1": 9, "b2": 1} {
		if err := pool.ReportLoad(id, balancer.LoadReport{Queue: q, KVCache: float64(q) / 4}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := pickPath(t, pool, "/"); got != "b2" {
		t.Errorf("picked %s, want b2, the shorter queue", got)
	}
	clock.Advance(2500 * time.Millisecond)
	if got := pickPath(t, pool, "/age"); got != "b2" {
		t.Errorf("picked %s: b2's load_age is not 2.5 s or its kv_cache not 0.25", got)
	}
	if st := rt.Stats(); st.Total(luabind.HookPick) != 1 {
		t.Errorf("%d pick failures, want still 1: a view's load fields disagreed", st.Total(luabind.HookPick))
	}
}

func TestLoadMaxAgeHidesStaleReports(t *testing.T) {
	pool, clock := loadPool(t)
	rt := newRT(t, loadScript, luabind.WithLoadMaxAge(2*time.Second), luabind.WithClock(clock))
	pool.SetPickFunc(rt.BalancerPick(0))
	if err := pool.ReportLoad("b3", balancer.LoadReport{Queue: 4}, 0); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if got := pickPath(t, pool, "/"); got != "b3" {
		t.Fatalf("a report 2 s old (limit 2 s): picked %s, want b3", got)
	}
	clock.Advance(time.Millisecond)
	pickPath(t, pool, "/")
	if st := rt.Stats(); st.Total(luabind.HookPick) != 1 {
		t.Errorf("a stale report was shown: %d pick failures, want 1 (the script's \"none\")", st.Total(luabind.HookPick))
	}
	if _, err := luabind.New(luabind.FromString("s.lua", loadScript), luabind.WithLoadMaxAge(-1)); err == nil {
		t.Error("a negative load max age was accepted")
	}
}

const queueScript = `
function pick(req, backends)
  local best, bestq = 1, nil
  for i, b in ipairs(backends) do
    if b.queue and (bestq == nil or b.queue < bestq) then best, bestq = i, b.queue end
  end
  return best
end`

// BenchmarkBalancerPickLoad is a Lua pick over 8 backends: "first" returns 1, "queue"
// loops over the views for the shortest queue; with "reports" each backend has a load
// report, renewed every 64 picks (a scrape), else none. The views are rewritten in
// place, a field only when it changed: the load fields cost nothing between scrapes.
func BenchmarkBalancerPickLoad(b *testing.B) {
	for _, sc := range []struct{ name, script string }{{"first", "function pick(req, backends) return 1 end"}, {"queue", queueScript}} {
		for _, reports := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/reports=%v", sc.name, reports), func(b *testing.B) {
				benchPickLoad(b, sc.script, reports)
			})
		}
	}
}

func benchPickLoad(b *testing.B, script string, reports bool) {
	pool, clock := loadPool(b)
	var eps []balancer.Endpoint
	for i := range 8 {
		eps = append(eps, balancer.Endpoint{ID: fmt.Sprintf("b%d", i), URL: fmt.Sprintf("http://10.0.0.%d", i+1)})
	}
	if err := pool.Update(eps); err != nil {
		b.Fatal(err)
	}
	rt, err := luabind.New(luabind.FromString("s.lua", script), quiet(), luabind.WithClock(clock))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	pick := rt.BalancerPick(0)
	bs := pool.Backends()
	req := &balancer.Request{}
	scrape := func(n int) {
		if !reports {
			return
		}
		clock.Advance(time.Second)
		for i, be := range bs {
			_ = pool.ReportLoad(be.ID(), balancer.LoadReport{Queue: int64(i + n%5), KVCache: 0.5}, 0)
		}
	}
	scrape(0)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		if n%64 == 0 {
			scrape(n)
		}
		if i, _ := pick(req, bs); i < 0 {
			b.Fatal("no pick")
		}
	}
}
