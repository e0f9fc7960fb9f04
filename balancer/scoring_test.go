package balancer_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

func scoringPool(t testing.TB, n int, c balancer.ScoringConfig) (*balancer.Pool, *balancer.Scoring, func(time.Duration)) {
	t.Helper()
	a, err := balancer.NewScoring(c)
	if err != nil {
		t.Fatal(err)
	}
	p, clock := newPool(t, n, balancer.WithAlgorithm(a))
	return p, a, func(d time.Duration) { clock.Advance(d) }
}

func report(t testing.TB, p *balancer.Pool, id string, r balancer.LoadReport) {
	t.Helper()
	if err := p.ReportLoad(id, r, time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// counts picks (each ended at once) and returns the picks per backend id.
func counts(t testing.TB, p *balancer.Pool, req *balancer.Request, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		out[pickDone(t, p, req, balancer.Outcome{Status: 200})]++
	}
	return out
}

func TestWeightsValidate(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		w    balancer.Weights
		ok   bool
	}{
		{"defaults", balancer.DefaultWeights, true},
		{"one", balancer.Weights{Queue: 1}, true},
		{"all zero", balancer.Weights{}, false},
		{"negative", balancer.Weights{Queue: 1, KVCache: -1}, false},
		{"NaN", balancer.Weights{Prefix: nan}, false},
		{"Inf", balancer.Weights{Latency: math.Inf(1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", tc.w, err, tc.ok)
			}
			if err != nil && !errors.Is(err, balancer.ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestScoringSetWeights(t *testing.T) {
	p, a, _ := scoringPool(t, 3, balancer.ScoringConfig{Weights: balancer.Weights{Queue: 1}})
	// b00 has the shortest queue, b01 the least KV cache.
	report(t, p, "b00", balancer.LoadReport{Queue: 0, KVCache: 0.5})
	report(t, p, "b01", balancer.LoadReport{Queue: 3, KVCache: 0.1})
	report(t, p, "b02", balancer.LoadReport{Queue: 4, KVCache: 0.7})
	if got := counts(t, p, nil, 20); got["b00"] != 20 {
		t.Fatalf("queue weight: picks %v, want all on b00", got)
	}
	for _, bad := range []balancer.Weights{{}, {Queue: math.NaN()}, {KVCache: -2}} {
		if err := a.SetWeights(bad); !errors.Is(err, balancer.ErrInvalidConfig) {
			t.Fatalf("SetWeights(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
	if got := a.Weights(); got != (balancer.Weights{Queue: 1}) {
		t.Fatalf("bad SetWeights changed the weights to %+v", got)
	}
	if err := a.SetWeights(balancer.Weights{KVCache: 1}); err != nil {
		t.Fatal(err)
	}
	if got := counts(t, p, nil, 20); got["b01"] != 20 {
		t.Fatalf("KV-cache weight: picks %v, want all on b01", got)
	}
}

func TestScoringConfigValidate(t *testing.T) {
	bad := balancer.ScoringConfig{
		Weights:          balancer.Weights{Queue: -1},
		MaxReportAge:     -time.Second,
		SaturatedKVCache: math.NaN(),
		TopK:             balancer.MaxTopK + 1,
		Sample:           -1,
		BlockSize:        -1,
		MaxBlocks:        balancer.MaxPrefixBlocks + 1,
		PrefixEntries:    -1,
		AbsMargin:        math.NaN(),
		RelMargin:        0.5,
	}
	_, err := balancer.NewScoring(bad)
	if !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("NewScoring = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"weight queue", "max report age", "NaN", "top k", "sample", "block size", "max blocks", "prefix entries", "absolute margin", "relative margin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Zero means the defaults: block size 0 is DefaultBlockSize.
	a, err := balancer.NewScoring(balancer.ScoringConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := a.Config()
	if c.BlockSize != balancer.DefaultBlockSize || c.MaxBlocks != balancer.DefaultMaxBlocks ||
		c.MaxReportAge != balancer.DefaultMaxReportAge || c.Weights != balancer.DefaultWeights || c.TopK != 1 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestScoringSaturation(t *testing.T) {
	p, _, advance := scoringPool(t, 3, balancer.ScoringConfig{})
	report(t, p, "b00", balancer.LoadReport{Queue: 50})
	report(t, p, "b01", balancer.LoadReport{KVCache: 0.95})
	report(t, p, "b02", balancer.LoadReport{Queue: 1, KVCache: 0.3})
	if got := counts(t, p, nil, 30); got["b02"] != 30 {
		t.Fatalf("picks %v, want all on b02, the one not saturated", got)
	}
	// Every backend saturated: the pick goes on among all of them, and the scorers
	// prefer the least saturated (b02's queue and KV cache are the least).
	report(t, p, "b02", balancer.LoadReport{Queue: 9, KVCache: 0.85})
	report(t, p, "b00", balancer.LoadReport{Queue: 50, KVCache: 0.9})
	report(t, p, "b01", balancer.LoadReport{Queue: 20, KVCache: 0.95})
	if got := counts(t, p, nil, 30); got["b02"] != 30 {
		t.Fatalf("all saturated: picks %v, want all on b02", got)
	}
	// Reports older than MaxReportAge count as none: nobody is saturated, and the
	// picks spread by in-flight counts (each is done at once, so at random).
	advance(balancer.DefaultMaxReportAge + time.Second)
	got := counts(t, p, nil, 300)
	for _, id := range []string{"b00", "b01", "b02"} {
		if got[id] < 50 {
			t.Fatalf("stale reports: picks %v, want each backend picked", got)
		}
	}
}

func TestScoringNoReportIsMiddle(t *testing.T) {
	// b00 reports a long queue (not saturated, with the test off), b01 a short one,
	// b02 nothing: b02 scores the middle, so the top two are b01 and b02 and b00 is
	// never picked.
	p, _, _ := scoringPool(t, 3, balancer.ScoringConfig{Weights: balancer.Weights{Queue: 1}, SaturatedQueue: -1, TopK: 2})
	report(t, p, "b00", balancer.LoadReport{Queue: 100})
	report(t, p, "b01", balancer.LoadReport{Queue: 0})
	var held []balancer.Result
	for range 10 {
		r, err := p.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	in := map[string]int64{}
	for _, b := range p.Ready() {
		in[b.ID()] = b.InFlight()
	}
	if in["b00"] != 0 || in["b02"] < 3 {
		t.Fatalf("in flight %v, want b01 and b02 sharing, b00 none", in)
	}
	for _, r := range held {
		r.Done(balancer.Outcome{Status: 200})
	}
}

func TestScoringInFlight(t *testing.T) {
	p, _, _ := scoringPool(t, 4, balancer.ScoringConfig{Weights: balancer.Weights{InFlight: 1}})
	var held []balancer.Result
	for range 8 {
		r, err := p.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	for _, b := range p.Ready() {
		if b.InFlight() != 2 {
			t.Fatalf("%s has %d in flight, want 2 each", b.ID(), b.InFlight())
		}
	}
	for _, r := range held {
		r.Done(balancer.Outcome{Status: 200})
	}
}

func TestScoringTopK(t *testing.T) {
	// With TopK 2 the two best-scored backends share the picks by in flight; the
	// third is never picked.
	p, _, _ := scoringPool(t, 3, balancer.ScoringConfig{Weights: balancer.Weights{Queue: 1}, TopK: 2})
	report(t, p, "b00", balancer.LoadReport{Queue: 0})
	report(t, p, "b01", balancer.LoadReport{Queue: 1})
	report(t, p, "b02", balancer.LoadReport{Queue: 4})
	var held []balancer.Result
	for range 10 {
		r, err := p.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	in := map[string]int64{}
	for _, b := range p.Ready() {
		in[b.ID()] = b.InFlight()
	}
	if in["b02"] != 0 || in["b00"] < 4 || in["b01"] < 4 {
		t.Fatalf("in flight %v, want b00 and b01 sharing, b02 none", in)
	}
	for _, r := range held {
		r.Done(balancer.Outcome{Status: 200})
	}
}

func sharedPrompt(system, user int) string {
	return strings.Repeat("system prompt "+string(rune('A'+system))+" says be brief. ", 40) + "user " + strings.Repeat(string(rune('a'+user%26)), 100+user)
}

func TestScoringPrefixAffinity(t *testing.T) {
	p, _, _ := scoringPool(t, 8, balancer.ScoringConfig{})
	for sys := range 3 {
		req := &balancer.Request{Prompt: sharedPrompt(sys, 0)}
		first := pickDone(t, p, req, balancer.Outcome{Status: 200})
		for u := 1; u < 50; u++ {
			req.Prompt = sharedPrompt(sys, u)
			if got := pickDone(t, p, req, balancer.Outcome{Status: 200}); got != first {
				t.Fatalf("system prompt %d, user %d went to %s, not %s", sys, u, got, first)
			}
		}
	}
	// An empty prompt, or one shorter than a block, has no affinity: picks spread.
	for _, prompt := range []string{"", "short"} {
		got := counts(t, p, &balancer.Request{Prompt: prompt}, 400)
		if len(got) < 8 {
			t.Fatalf("prompt %q: picks %v, want every backend", prompt, got)
		}
	}
}

func TestScoringPrefixGatedByLoad(t *testing.T) {
	p, _, _ := scoringPool(t, 4, balancer.ScoringConfig{AbsMargin: 2, RelMargin: 1})
	req := &balancer.Request{Prompt: sharedPrompt(0, 0)}
	first := pickDone(t, p, req, balancer.Outcome{Status: 200})
	// Hold requests of the same prefix: they stay on first while its load is within
	// 2 of the least loaded (0), and then move.
	var held []balancer.Result
	moved := ""
	for u := 1; u < 10 && moved == ""; u++ {
		req.Prompt = sharedPrompt(0, u)
		r, err := p.Pick(req)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
		if r.Backend.ID() != first {
			moved = r.Backend.ID()
			if n := len(held) - 1; n != 3 {
				t.Fatalf("moved after %d held on %s, want 3 (the margin 2, exceeded)", n, first)
			}
		}
	}
	if moved == "" {
		t.Fatal("traffic never left the affine backend")
	}
	for _, r := range held {
		r.Done(balancer.Outcome{Status: 200})
	}
	// Loads even again: back to a backend that holds the prefix (the one it moved to
	// recorded it too, at its pick).
	for range 20 {
		if got := pickDone(t, p, req, balancer.Outcome{Status: 200}); got != first && got != moved {
			t.Fatalf("after the burst: %s, want %s or %s", got, first, moved)
		}
	}
}

func TestScoringModels(t *testing.T) {
	a, err := balancer.NewScoring(balancer.ScoringConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newPool(t, 0, balancer.WithAlgorithm(a))
	eps := endpoints(6)
	for i := range eps {
		eps[i].Labels = map[string]string{balancer.LabelModel: []string{"small", "large"}[i%2]}
	}
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"small", "large"} {
		req := &balancer.Request{Model: model, Prompt: sharedPrompt(1, 0)}
		first := pickDone(t, p, req, balancer.Outcome{Status: 200})
		b, _ := p.Lookup(first)
		if b.Label(balancer.LabelModel) != model {
			t.Fatalf("model %s picked %s", model, first)
		}
		for u := 1; u < 20; u++ {
			req.Prompt = sharedPrompt(1, u)
			if got := pickDone(t, p, req, balancer.Outcome{Status: 200}); got != first {
				t.Fatalf("model %s: %s, want %s", model, got, first)
			}
		}
	}
}

// WithPrompt hands the proxy's picks the request's prompt; without it they get none.
func TestProxyWithPrompt(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer be.Close()
	for _, tc := range []struct {
		name string
		opts []balancer.ProxyOption
		want string
	}{
		{"with", []balancer.ProxyOption{balancer.WithPrompt(balancer.HeaderKey("X-Prompt"))}, "be brief"},
		{"without", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			p, _ := newPool(t, 0, balancer.WithPickFunc(func(req *balancer.Request, _ []*balancer.Backend) (int, error) {
				mu.Lock()
				got = append(got, req.Prompt)
				mu.Unlock()
				return 0, nil
			}))
			if err := p.Update([]balancer.Endpoint{{ID: "a", URL: be.URL}}); err != nil {
				t.Fatal(err)
			}
			proxy, err := balancer.NewProxy(p, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.CloseIdleConnections()
			r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader("{}"))
			r.Header.Set("X-Prompt", "be brief")
			w := httptest.NewRecorder()
			proxy.ServeHTTP(w, r)
			mu.Lock()
			defer mu.Unlock()
			if w.Code != http.StatusOK || len(got) != 1 || got[0] != tc.want {
				t.Fatalf("status %d, prompts seen %q, want [%q]", w.Code, got, tc.want)
			}
		})
	}
}

func TestScoringHugePromptAndSample(t *testing.T) {
	// A 4 MB prompt is hashed only up to MaxBlocks blocks, and still sticks: the
	// prompts differ only past that.
	p, _, _ := scoringPool(t, 4, balancer.ScoringConfig{MaxBlocks: 8})
	huge := strings.Repeat("x", 4<<20)
	req := &balancer.Request{Prompt: huge + "1"}
	first := pickDone(t, p, req, balancer.Outcome{Status: 200})
	for i := range 10 {
		req.Prompt = huge + fmt.Sprint(i)
		if got := pickDone(t, p, req, balancer.Outcome{Status: 200}); got != first {
			t.Fatalf("huge prompt %d went to %s, want %s", i, got, first)
		}
	}
	// Sample scores a run of 2 of the 6 candidates from a random place: every backend
	// is still picked, and never a saturated one unless both sampled are.
	p, _, _ = scoringPool(t, 6, balancer.ScoringConfig{Sample: 2})
	report(t, p, "b03", balancer.LoadReport{Queue: 100})
	got := counts(t, p, nil, 600)
	for _, id := range []string{"b00", "b01", "b02", "b04", "b05"} {
		if got[id] < 30 {
			t.Fatalf("sampled picks %v, want every backend that is not saturated", got)
		}
	}
	if got["b03"] != 0 {
		t.Fatalf("sampled picks %v: the saturated b03 was picked", got)
	}
}

// Picks from more goroutines than the kept scratch slots, with prompts, weights
// changing meanwhile: for the race detector, and every pick answers.
func TestScoringConcurrent(t *testing.T) {
	s := &balancer.Scoring{} // the zero value
	p, err := balancer.New(balancer.WithAlgorithm(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(endpoints(20)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			req := &balancer.Request{}
			for i := range 200 {
				req.Prompt = sharedPrompt(g%3, i)
				r, err := p.Pick(req)
				if err != nil {
					t.Error(err)
					return
				}
				r.Done(balancer.Outcome{Status: 200, Latency: time.Millisecond})
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			_ = p.ReportLoad("b01", balancer.LoadReport{Queue: int64(i % 10)}, 0)
			w := balancer.DefaultWeights
			w.Prefix = float64(i % 4)
			if err := s.SetWeights(w); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}
