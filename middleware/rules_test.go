package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// TestAdmissionRuleChurn: a loop that throttles 2,000 new tenants per 1 s tick keeps
// at most MaxRules rules; rules it stops re-issuing expire after RuleTTL, on the
// request path at once and from memory as changes sweep them; a rule re-issued
// every tick stays.
func TestAdmissionRuleChurn(t *testing.T) {
	const perTick, ttl, maxRules = 2000, 5 * time.Second, 8000
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{RuleTTL: ttl, MaxRules: maxRules}, middleware.WithAdmissionClock(clk))
	refused := 0
	for tick := range 30 {
		if err := a.Throttle("kept", 0, 0); err != nil { // re-issued every tick
			t.Fatal(err)
		}
		for i := range perTick {
			err := a.Throttle(fmt.Sprintf("t%d-%d", tick, i), 0, 0)
			if errors.Is(err, middleware.ErrTooManyRules) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if st := a.Stats(); st.Rules > maxRules {
			t.Fatalf("tick %d: %d rules, more than MaxRules %d", tick, st.Rules, maxRules)
		}
		clk.Advance(time.Second)
	}
	st := a.Stats()
	// 2,001 rules a tick, each living 5 s: at most about 6 ticks' worth (12,006) would
	// be live, so MaxRules (8,000) refuses some and expiry frees room every tick.
	if st.RulesExpired == 0 || st.RulesRefused == 0 || uint64(refused) != st.RulesRefused {
		t.Errorf("expired %d, refused %d (counted %d): want both", st.RulesExpired, refused, st.RulesRefused)
	}
	admit := func(tenant string) error {
		p, err := a.Admit(context.Background(), middleware.Info{Tenant: tenant, Now: clk.Now()})
		if err == nil {
			p.Done()
		}
		return err
	}
	if err := admit("kept"); !errors.Is(err, middleware.ErrThrottled) {
		t.Errorf("the re-issued rule: %v, want throttled", err)
	}
	// The first tick's rules have expired on the request path, swept or not.
	if err := admit("t0-0"); err != nil {
		t.Errorf("an expired rule still throttles: %v", err)
	}
	// Changing an existing rule is never refused, even at the bound.
	if err := a.Throttle("kept", 5, 5); err != nil {
		t.Errorf("changing a rule at the bound: %v", err)
	}
}

func TestAdmissionRulesExpire(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{RuleTTL: time.Minute}, middleware.WithAdmissionClock(clk))
	a.Shed("/x", 1, time.Second)
	a.Route("/a", "/b", 1)
	a.Throttle("acme", 0, 0)
	check := func(wantRules bool) {
		t.Helper()
		_, err := a.Admit(context.Background(), middleware.Info{Route: "/x", Now: clk.Now()})
		if got := errors.Is(err, middleware.ErrShed); got != wantRules {
			t.Errorf("shed: %v", err)
		}
		_, err = a.Admit(context.Background(), middleware.Info{Tenant: "acme", Now: clk.Now()})
		if got := errors.Is(err, middleware.ErrThrottled); got != wantRules {
			t.Errorf("throttle: %v", err)
		}
		p, err := a.Admit(context.Background(), middleware.Info{Route: "/a", Now: clk.Now()})
		if err != nil {
			t.Fatal(err)
		}
		p.Done()
		if rt, _ := p.Rerouted(); (rt == "/b") != wantRules {
			t.Errorf("rerouted to %q", rt)
		}
	}
	clk.Advance(time.Minute)
	check(true)
	clk.Advance(time.Second)
	check(false)
	if _, err := middleware.NewAdmission(middleware.AdmissionConfig{MaxRules: -1}); err == nil {
		t.Error("negative MaxRules accepted")
	}
}

func TestAdmitAllocatesNothingWithRules(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithAdmissionClock(clk))
	for i := range 5000 {
		a.Throttle(fmt.Sprintf("t%d", i), 1e9, 1e9)
		a.Shed(fmt.Sprintf("/r%d", i), 0.000001, 0)
	}
	in := middleware.Info{Route: "/api", Tenant: "t7", Now: clk.Now()}
	allocs := testing.AllocsPerRun(1000, func() {
		p, err := a.Admit(context.Background(), in)
		if err == nil {
			p.Done()
		}
	})
	if allocs != 0 {
		t.Errorf("Admit allocates %v per call with 10,000 rules", allocs)
	}
}

// BenchmarkThrottleNewTenant prices adding one throttled tenant when the admission
// already holds n: a copy of one shard, so flat in n (a copy of every rule map before).
func BenchmarkThrottleNewTenant(b *testing.B) {
	for _, n := range []int{1000, 9000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			clk := metrics.NewManualClock(t0)
			a := newAdmission(b, middleware.AdmissionConfig{MaxRules: 1 << 30, RuleTTL: -1}, middleware.WithAdmissionClock(clk))
			for i := range n {
				a.Throttle(fmt.Sprintf("base%d", i), 10, 10)
			}
			names := make([]string, 4096)
			for i := range names {
				names[i] = fmt.Sprintf("new%d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				name := names[i%len(names)]
				a.Throttle(name, 10, 10)
				a.Throttle(name, math.Inf(1), 0) // remove: the next round adds it again
				i++
			}
		})
	}
}

// TestAdmissionRuleChangeCostsPerChange: adding a rule costs what one shard holds,
// not what all rules hold (copying every rule map per change made a 1 s tick of
// 2,000 new tenants take 4.3 s by tick 10). The bytes a new rule allocates with
// 50,000 rules held stay within a small multiple of those with none held; a copy of
// the whole map would be over a megabyte per change.
func TestAdmissionRuleChangeCostsPerChange(t *testing.T) {
	const changes = 2000
	perChange := func(held int) uint64 {
		a := newAdmission(t, middleware.AdmissionConfig{RuleTTL: time.Hour, MaxRules: held + changes}, middleware.WithAdmissionClock(metrics.NewManualClock(t0)))
		for i := range held {
			if err := a.Throttle(fmt.Sprintf("held-%d", i), 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		keys := make([]string, changes)
		for i := range keys {
			keys[i] = fmt.Sprintf("new-%d", i)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for _, k := range keys {
			if err := a.Throttle(k, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&m1)
		return (m1.TotalAlloc - m0.TotalAlloc) / changes
	}
	empty, full := perChange(0), perChange(50_000)
	t.Logf("bytes per new rule: %d with none held, %d with 50,000 held", empty, full)
	if full > 16*max(empty, 512) {
		t.Errorf("a new rule with 50,000 held allocates %d bytes, more than 16x the %d with none held: a change copies more than a shard", full, empty)
	}
}
