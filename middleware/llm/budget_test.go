package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func TestBudgetsReserveSettle(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	b, err := NewBudgets(BudgetsConfig{}, clk)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Set("acme", "", Budget{TokensPerMinute: 600, DailyTokens: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := b.Set("acme", "big", Budget{TokensPerMinute: 120}); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	// No budget: passes, holds nothing.
	if r, err := b.Reserve("other", "m", 1e9, now); err != nil || r.Held() {
		t.Fatalf("unbudgeted tenant: %+v %v", r, err)
	}
	r1, err := b.Reserve("acme", "small", 500, now)
	if err != nil || !r1.Held() || r1.Remaining != 100 || r1.Limit != 600 {
		t.Fatalf("reserve 500: %+v %v", r1, err)
	}
	// 200 more: the tenant bucket has 100; 100 more at 10/s come in 10 s.
	r2, err := b.Reserve("acme", "small", 200, now)
	if !errors.Is(err, ErrOverRate) || r2.RetryAfter != 10*time.Second || r2.Held() {
		t.Fatalf("over rate: %+v %v", r2, err)
	}
	// Settle under the reservation: 300 go back.
	b.Settle(r1, 200, now)
	st, _ := b.State("acme", "", now)
	if st.Level != 400 || st.DayUsed != 200 || st.Reserved != 0 || st.InFlight != 0 {
		t.Fatalf("after settle: %+v", st)
	}
	// The model bucket (120) refuses 150; the tenant bucket must get its tokens back.
	if _, err := b.Reserve("acme", "big", 150, now); !errors.Is(err, ErrTooLargeForBudget) {
		t.Fatalf("too large for the model budget: %v", err)
	}
	if st, _ := b.State("acme", "", now); st.Level != 400 || st.DayUsed != 200 || st.Reserved != 0 {
		t.Fatalf("tenant bucket not rolled back: %+v", st)
	}
	// Over the reservation: the excess is taken, never below zero.
	r3, err := b.Reserve("acme", "big", 100, now)
	if err != nil {
		t.Fatal(err)
	}
	b.Settle(r3, 1000, now)
	st, _ = b.State("acme", "", now)
	sm, _ := b.State("acme", "big", now)
	if st.Level != 0 || sm.Level != 0 || st.DayUsed != 1200 {
		t.Fatalf("overspend: tenant %+v model %+v", st, sm)
	}
	if s := b.Stats(); s.Overspent != 1000-100-20 || s.Outstanding != 0 || s.Reserved != 2 || s.Settled != 2 {
		t.Fatalf("stats %+v", s)
	}
	// The day's quota is spent: even a full bucket refuses until midnight.
	clk.Advance(time.Minute)
	r4, err := b.Reserve("acme", "small", 10, clk.Now())
	if !errors.Is(err, ErrOverQuota) || r4.RetryAfter != 13*time.Hour+59*time.Minute {
		t.Fatalf("over quota: %+v %v", r4, err)
	}
	clk.Set(time.Date(2026, 12, 4, 0, 0, 1, 0, time.UTC))
	if _, err := b.Reserve("acme", "small", 10, clk.Now()); err != nil {
		t.Fatalf("next day: %v", err)
	}
}

func TestBudgetsAnyTenant(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	b, _ := NewBudgets(BudgetsConfig{MaxTenants: 2}, clk)
	if err := b.Set(AnyTenant, "", Budget{TokensPerMinute: 100}); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	for _, tenant := range []string{"a", "b"} {
		if _, err := b.Reserve(tenant, "m", 100, now); err != nil {
			t.Fatalf("%s: %v", tenant, err)
		}
		if _, err := b.Reserve(tenant, "m", 1, now); !errors.Is(err, ErrOverRate) {
			t.Fatalf("%s second: %v", tenant, err)
		}
	}
	// Past MaxTenants, tenants share one bucket.
	if _, err := b.Reserve("c", "m", 60, now); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve("d", "m", 60, now); !errors.Is(err, ErrOverRate) {
		t.Fatalf("shared bucket: %v", err)
	}
	// A change of the default reaches the buckets made from it.
	b.Set(AnyTenant, "", Budget{TokensPerMinute: 100, Burst: 1000})
	clk.Advance(2 * time.Minute) // 200 tokens in; under the old burst 100 would fit
	if _, err := b.Reserve("a", "m", 200, clk.Now()); err != nil {
		t.Fatalf("after raising the burst: %v", err)
	}
}

func TestBudgetValidate(t *testing.T) {
	if err := (Budget{TokensPerMinute: -1, Burst: -1, DailyTokens: -1}).Validate(); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("Validate = %v, want three problems", err)
	}
	b, _ := NewBudgets(BudgetsConfig{}, nil)
	if err := b.Set("", "", Budget{}); err == nil {
		t.Error("empty tenant accepted")
	}
}

// TestBudgetsUnderConcurrency sends 640 requests from 64 concurrent clients of one
// tenant through the gateway over HTTP. Each request's prompt is estimated, and the
// upstream reports 5 tokens more than the estimate (an underestimate, the only source
// of overspend with max_tokens set) and exactly max_tokens of output. The clock
// stands still, so the budget is exactly its burst: the tokens used by the requests
// served may exceed it by at most 64 × 5, every request is served or rejected, and no
// reservation is left.
func TestBudgetsUnderConcurrency(t *testing.T) {
	const (
		clients, each = 64, 10
		burst         = 20000
		underestimate = 5
		maxTokens     = 20
	)
	clk := metrics.NewManualClock(t0)
	budgets, _ := NewBudgets(BudgetsConfig{}, clk)
	budgets.Set("acme", "", Budget{TokensPerMinute: burst})
	reg, _ := metrics.NewRegistry(metrics.WithClock(clk))
	rg := newRig(t, Config{}, WithBudgets(budgets), WithClock(clk), WithRegistry(reg))
	body := `{"model":"small","max_tokens":20,"user":"acme","messages":[{"role":"user","content":"Count the tokens of this prompt, please."}]}`
	var q Request
	Parse([]byte(body), EndpointChatCompletions, &q)
	est := rg.gw.Estimator().Estimate(&q)
	rg.up.in, rg.up.out = est+underestimate, maxTokens

	var served, rejected, other atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				resp, err := http.Post(rg.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					served.Add(1)
				case 429:
					if resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "" || resp.Header.Get("X-Ratelimit-Reset-Tokens") == "" {
						other.Add(1)
					}
					rejected.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	used := int64(rg.value(ScopeTenantInputTokens, "acme") + rg.value(ScopeTenantOutputTokens, "acme"))
	t.Logf("served %d, rejected %d, used %d of %d (estimate %d, reservation %d)", served.Load(), rejected.Load(), used, burst, est, est+maxTokens)
	if served.Load()+rejected.Load() != clients*each || other.Load() != 0 {
		t.Errorf("served %d + rejected %d != sent %d (other %d)", served.Load(), rejected.Load(), clients*each, other.Load())
	}
	if bound := int64(burst + clients*underestimate); used > bound {
		t.Errorf("used %d tokens, more than the bound %d", used, bound)
	}
	if served.Load() == 0 || rejected.Load() == 0 {
		t.Errorf("the test did not reach the budget")
	}
	if m, tn := rg.rejected(metrics.ScopeModel, "small"), rg.rejected(metrics.ScopeTenant, "acme"); m != uint64(rejected.Load()) || tn != m {
		t.Errorf("windows count %d (model) and %d (tenant) rejections, the clients %d", m, tn, rejected.Load())
	}
	st, _ := budgets.State("acme", "", clk.Now())
	if s := budgets.Stats(); s.Outstanding != 0 || s.Reserved != s.Settled || st.Level < 0 || st.InFlight != 0 {
		t.Errorf("stats %+v state %+v", s, st)
	}
	if int64(served.Load())*(est+underestimate+maxTokens) != used {
		t.Errorf("windows hold %d tokens, want %d", used, int64(served.Load())*(est+underestimate+maxTokens))
	}
}

// TestCanceledRequestsSettle cancels 1,000 streamed requests mid-flight, half after
// their first event reached the client and half before the upstream answered, and
// checks that every reservation was settled and no bucket went negative.
func TestCanceledRequestsSettle(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	budgets, _ := NewBudgets(BudgetsConfig{}, clk)
	budgets.Set(AnyTenant, "", Budget{TokensPerMinute: 1 << 40, DailyTokens: 1 << 40})
	rg := newRig(t, Config{}, WithBudgets(budgets), WithClock(clk))
	stall := make(chan struct{}) // never closed: the upstream waits for the client to leave
	rg.up.gate = stall
	rg.up.cancelable = true
	const n = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			body := fmt.Sprintf(`{"model":"small","stream":true,"max_tokens":50,"user":"t%d","messages":[{"role":"user","content":"hi"}]}`, i%50)
			path := "/v1/chat/completions"
			if i%2 == 1 {
				path = "/v1/messages"
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", rg.url+path, strings.NewReader(body))
			if i%4 < 2 {
				// Before the upstream answers: cancel once the upstream holds it.
				id, held := fmt.Sprint(i), make(chan struct{})
				rg.up.holds.Store(id, held)
				req.Header.Set("X-Test-Hold", id)
				go func() { <-held; cancel() }()
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			resp.Body.Read(buf) // the first event
			cancel()
			resp.Body.Close()
		}()
	}
	wg.Wait()
	rg.close() // waits for every handler to return
	s := budgets.Stats()
	t.Logf("budget stats %+v", s)
	if s.Reserved != n || s.Settled != n || s.Outstanding != 0 {
		t.Errorf("reserved %d, settled %d, outstanding %d tokens; want %d, %d, 0", s.Reserved, s.Settled, s.Outstanding, n, n)
	}
	for i := 0; i < 50; i++ {
		st, ok := budgets.State(fmt.Sprintf("t%d", i), "", clk.Now())
		if !ok || st.InFlight != 0 || st.Reserved != 0 || st.Level < 0 || st.DayUsed < 0 {
			t.Errorf("tenant t%d: %+v", i, st)
		}
	}
}
