package llm

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

func chatJSON(system, user string) string {
	b, _ := json.Marshal(map[string]any{
		"model": "llama",
		"messages": []map[string]string{
			{"role": "system", "content": system},
			{"role": "user", "content": user},
		},
	})
	return string(b)
}

func TestRequestPromptPrefix(t *testing.T) {
	var q Request
	body := chatJSON("be brief", "hello there")
	if err := Parse([]byte(body), EndpointChatCompletions, &q); err != nil {
		t.Fatal(err)
	}
	got := string(q.PromptPrefix(1 << 20))
	if !strings.HasPrefix(got, `"be brief"`) || !strings.HasSuffix(got, `"hello there"`) {
		t.Fatalf("prefix %q", got)
	}
	if got := string(q.PromptPrefix(5)); got != `"be b` {
		t.Fatalf("cut at 5: %q", got)
	}
	if q.PromptPrefix(0) != nil {
		t.Fatal("maxBytes 0 gave a prefix")
	}
	// A request the gateway did not read has none.
	if got := PromptPrefix(0)(httptest.NewRequest("GET", "/", nil)); got != "" {
		t.Fatalf("plain request: %q", got)
	}
}

// The test: model servers over real HTTP behind the gateway and a balancer
// proxy with the Scoring algorithm; a workload of a few system prompts times many
// user messages. Requests sharing a system prompt land on one backend (at least 80%
// of them) while loads are within the margin; when that backend reports a queue
// that saturates it, its traffic moves.
func TestScoringPrefixOverHTTP(t *testing.T) {
	const backends = 4
	type hit struct{ backend, system int }
	var mu sync.Mutex
	var hits []hit
	var eps []balancer.Endpoint
	for i := range backends {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Messages []struct{ Content string } `json:"messages"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			sys := int(req.Messages[0].Content[len("system ")] - 'A')
			mu.Lock()
			hits = append(hits, hit{i, sys})
			mu.Unlock()
			time.Sleep(time.Millisecond) // a little work, so requests overlap
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":1,"total_tokens":301}}`)
		}))
		defer s.Close()
		eps = append(eps, balancer.Endpoint{ID: fmt.Sprint("m", i), URL: s.URL})
	}
	scoring, err := balancer.NewScoring(balancer.ScoringConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := balancer.New(balancer.WithAlgorithm(scoring))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update(eps); err != nil {
		t.Fatal(err)
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithPrompt(PromptPrefix(0)))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.CloseIdleConnections()
	gw, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw.Wrap(proxy))
	defer front.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	system := func(s int) string {
		return "system " + string(rune('A'+s)) + ": " + strings.Repeat(fmt.Sprintf("rule %d of assistant %d; ", s, s), 40)
	}
	send := func(jobs []hit) {
		t.Helper()
		ch := make(chan hit)
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				for j := range ch {
					body := chatJSON(system(j.system), fmt.Sprintf("question %d from user %d?", j.backend, j.backend*7))
					res, err := client.Post(front.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						t.Errorf("status %d", res.StatusCode)
					}
				}
			})
		}
		for _, j := range jobs {
			ch <- j
		}
		close(ch)
		wg.Wait()
	}
	var jobs []hit // backend holds the user number here
	for s := range 3 {
		for u := range 60 {
			jobs = append(jobs, hit{u, s})
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	send(jobs)

	// Per system prompt, the share of its requests on its most used backend.
	mode := func(from int) (map[int]int, map[int]float64) {
		mu.Lock()
		defer mu.Unlock()
		per := map[int]map[int]int{}
		for _, h := range hits[from:] {
			if per[h.system] == nil {
				per[h.system] = map[int]int{}
			}
			per[h.system][h.backend]++
		}
		best, share := map[int]int{}, map[int]float64{}
		for s, m := range per {
			total := 0
			for b, n := range m {
				total += n
				if n > m[best[s]] {
					best[s] = b
				}
			}
			share[s] = float64(m[best[s]]) / float64(total)
		}
		return best, share
	}
	best, share := mode(0)
	for s := range 3 {
		t.Logf("system prompt %d: %.0f%% on backend %d", s, 100*share[s], best[s])
		if share[s] < 0.8 {
			t.Errorf("system prompt %d: %.0f%% of its requests on one backend, want at least 80%%", s, 100*share[s])
		}
	}

	// Saturate system prompt 0's backend: its requests move.
	sat := best[0]
	if err := pool.ReportLoad(eps[sat].ID, balancer.LoadReport{Queue: 50, InFlight: 8}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	from := len(hits)
	mu.Unlock()
	jobs = jobs[:0]
	for u := range 40 {
		jobs = append(jobs, hit{100 + u, 0})
	}
	send(jobs)
	mu.Lock()
	on := 0
	for _, h := range hits[from:] {
		if h.backend == sat {
			on++
		}
	}
	mu.Unlock()
	if on != 0 {
		t.Errorf("%d of 40 requests went to the saturated backend", on)
	}
	// And they gather again on one other backend.
	if best2, share2 := mode(from); share2[0] < 0.8 || best2[0] == sat {
		t.Errorf("after saturation: %.0f%% on backend %d", 100*share2[0], best2[0])
	}
}
