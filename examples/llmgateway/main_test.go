package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/autoscale/dashboard"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the demo on a compressed cycle: a surge takes llama-70b to its max
// (economy prompts go to llama-8b), a quiet stretch takes it to zero, and its return
// wakes it, holding the first requests. batchco runs past its token budgets and
// gets 429s; acme and globex never do. Every request sent is accounted for, on the
// client's side, in the gateway's model windows and in the budgets.
func TestDemo(t *testing.T) {
	var out syncBuffer
	var g *gateway
	cfg := config{addr: "127.0.0.1:0", tick: 250 * time.Millisecond, duration: 22 * time.Second, idle: 2 * time.Second,
		span: 2 * time.Second, coldScale: 0.25, speed: 3,
		phases: []phase{
			{"steady", 2 * time.Second, map[string]float64{"llama-70b": 10, "llama-8b": 15, "hosted": 3}},
			{"surge", 5 * time.Second, map[string]float64{"llama-70b": 150, "llama-8b": 30, "hosted": 5}},
			{"quiet", 10 * time.Second, map[string]float64{"llama-8b": 4}},
			{"return", 4 * time.Second, map[string]float64{"llama-70b": 10, "llama-8b": 10}},
		},
		ready: func(gw *gateway) { g = gw },
	}
	var state dashboard.State
	cfg.ready = func(gw *gateway) {
		g = gw
		// Read the dashboard late in the surge, over HTTP.
		time.AfterFunc(6*time.Second, func() {
			res, err := http.Get(gw.url + "/debug/autoscale/api/state")
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			if err := json.NewDecoder(res.Body).Decode(&state); err != nil {
				t.Error(err)
			}
		})
	}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	log := out.String()
	t.Log(log)
	c := g.load.counts()
	if c.Sent == 0 || c.Sent != c.Served+c.BudgetRejected+c.Shed+c.Overloaded+c.Errored {
		t.Errorf("counts do not add up: %+v", c)
	}
	if c.Errored != 0 {
		t.Errorf("%d requests errored", c.Errored)
	}
	// The gateway recorded each request once, under the model it went to.
	var recorded, rejected uint64
	g.reg.Range(metrics.ScopeModel, func(w *metrics.Window) bool {
		recorded += w.Snapshot(0).Count
		rejected += w.Snapshot(0).Rejected
		return true
	})
	if recorded != uint64(c.Sent) {
		t.Errorf("the model windows count %d requests, the client sent %d", recorded, c.Sent)
	}
	if rejected != uint64(c.BudgetRejected+c.Shed) {
		t.Errorf("the model windows count %d rejections, the client %d over budget + %d shed", rejected, c.BudgetRejected, c.Shed)
	}
	by := g.load.budgetRejected()
	if by["batchco"] == 0 || by["acme"] != 0 || by["globex"] != 0 || by["batchco"] != c.BudgetRejected {
		t.Errorf("budget rejections by tenant %v, want batchco's alone (%d)", by, c.BudgetRejected)
	}
	if n := g.llm.Stats().BudgetRejected; n != uint64(c.BudgetRejected) {
		t.Errorf("the gateway rejected %d over budget, the client saw %d", n, c.BudgetRejected)
	}
	if st := g.llm.Budgets().Stats(); st.Outstanding != 0 || st.Reserved != st.Settled {
		t.Errorf("budgets not settled: %+v", st)
	}
	if !strings.Contains(log, "budget tenant batchco: 60000 tokens a minute") || !strings.Contains(log, fmt.Sprintf("budget-rejected %d,", c.BudgetRejected)) {
		t.Errorf("the banner or the exit line lacks the budgets")
	}
	for _, want := range []string{
		"route llama-70b:economy → llama-8b 100% applied  llm_cost: llama-70b at max 4 replicas",
		"scale llama-70b 4 →",
		"idle for 2s: scale to zero",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	// Its return woke it: requests were held (the holder asks the fleet at once, so
	// the policy may never see it cold), and the loop reads a replica again.
	if zero := strings.Index(log, "scale to zero"); zero < 0 || g.hold.held.Load() == 0 || !(strings.Contains(log[zero:], "scale llama-70b 1 →") || strings.Contains(log[zero:], "scale llama-70b 0 → 1")) {
		t.Errorf("llama-70b did not scale to zero and wake for held requests (held %d)", g.hold.held.Load())
	}
	var sawModel bool
	var sawRejected uint64
	for _, m := range state.Models {
		if m.Key == "llama-70b" && m.RPS > 0 {
			sawModel = true
		}
		sawRejected += m.Rejected
	}
	if sawRejected == 0 || state.Counters["budget rejected"] == 0 {
		t.Errorf("the dashboard shows no budget rejections in the surge: models %+v, counters %v", state.Models, state.Counters)
	}
	if !sawModel || len(state.Targets) != 3 {
		t.Errorf("dashboard state: models %+v, targets %+v", state.Models, state.Targets)
	}
}
