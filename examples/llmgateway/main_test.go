package main

import (
	"bytes"
	"context"
	"encoding/json"
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
// wakes it, holding the first requests. Every request sent is accounted for, on the
// client's side and in the gateway's model windows.
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
	var recorded uint64
	g.reg.Range(metrics.ScopeModel, func(w *metrics.Window) bool {
		recorded += w.Snapshot(0).Count
		return true
	})
	if recorded != uint64(c.Sent) {
		t.Errorf("the model windows count %d requests, the client sent %d", recorded, c.Sent)
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
	for _, m := range state.Models {
		if m.Key == "llama-70b" && m.RPS > 0 {
			sawModel = true
		}
	}
	if !sawModel || len(state.Targets) != 3 {
		t.Errorf("dashboard state: models %+v, targets %+v", state.Models, state.Targets)
	}
}
