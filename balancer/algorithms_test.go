package balancer_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/google/go-cmp/cmp"
)

// chiSquare returns Pearson's statistic of counts against expected shares.
func chiSquare(counts map[string]int, expected map[string]float64) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	var x float64
	for id, share := range expected {
		e := share * float64(total)
		d := float64(counts[id]) - e
		x += d * d / e
	}
	return x
}

// chiSquareCritical001 holds the 0.999 quantiles of the chi-square distribution by
// degrees of freedom: a fair picker exceeds them once in a thousand runs.
var chiSquareCritical001 = map[int]float64{1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 9: 27.88}

// concurrentCounts picks total times from g goroutines, ending each pick at once.
func concurrentCounts(t *testing.T, p *balancer.Pool, g, total int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			local := map[string]int{}
			for range total / g {
				r, err := p.Pick(nil)
				if err != nil {
					t.Error(err)
					return
				}
				local[r.Backend.ID()]++
				r.Done(balancer.Outcome{Status: 200})
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return counts
}

func TestFairness(t *testing.T) {
	tests := []struct {
		name    string
		alg     balancer.Algorithm
		weights []int
		exact   bool // the counts must be exactly proportional
		serial  bool // load-aware: fair only when nothing is in flight
	}{
		{"round robin", balancer.RoundRobin{}, []int{1, 1, 1, 1, 1, 1, 1}, true, false},
		{"round robin ignores weights", balancer.RoundRobin{}, []int{1, 5, 1}, true, false},
		{"smooth weighted", &balancer.SmoothWeighted{}, []int{5, 3, 1, 1}, true, false},
		{"smooth weighted uniform", &balancer.SmoothWeighted{}, []int{2, 2, 2}, true, false},
		{"random", balancer.Random{}, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, false, false},
		{"p2c idle", &balancer.P2C{}, []int{1, 1, 1, 1, 1}, false, true},
		{"peak ewma idle", &balancer.PeakEWMA{}, []int{1, 1, 1, 1, 1}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t, 0, balancer.WithAlgorithm(tt.alg))
			eps := endpoints(len(tt.weights))
			expected := map[string]float64{}
			sum := 0
			for i, w := range tt.weights {
				eps[i].Weight = w
				sum += w
			}
			for i, w := range tt.weights {
				share := float64(w) / float64(sum)
				if _, rr := tt.alg.(balancer.RoundRobin); rr || !tt.exact {
					share = 1 / float64(len(tt.weights))
				}
				expected[eps[i].ID] = share
			}
			if err := p.Update(eps); err != nil {
				t.Fatal(err)
			}
			total := 840 * sum * len(tt.weights) // a multiple of every period
			g := 4
			if tt.serial {
				g = 1
			}
			counts := concurrentCounts(t, p, g, total)
			x := chiSquare(counts, expected)
			crit := chiSquareCritical001[len(tt.weights)-1]
			if x > crit {
				t.Errorf("chi-square %.2f > %.2f (p < 0.001): counts %v", x, crit, counts)
			}
			if tt.exact {
				for id, share := range expected {
					if want := int(math.Round(share * float64(total))); counts[id] != want {
						t.Errorf("%s: %d picks, want exactly %d", id, counts[id], want)
					}
				}
			}
		})
	}
}

func TestSmoothWeightedSequence(t *testing.T) {
	// nginx's example: weights 5, 1, 1 give a a b a c a a, repeated.
	p, _ := newPool(t, 0, balancer.WithAlgorithm(&balancer.SmoothWeighted{}))
	err := p.Update([]balancer.Endpoint{{ID: "a", URL: "http://a", Weight: 5}, {ID: "b", URL: "http://b"}, {ID: "c", URL: "http://c"}})
	if err != nil {
		t.Fatal(err)
	}
	var seq string
	for range 14 {
		seq += pickDone(t, p, nil, balancer.Outcome{Status: 200})
	}
	// The start is random; the cycle is fixed.
	cycle := "aabacaa"
	found := false
	for i := range cycle {
		rot := cycle[i:] + cycle[:i]
		if seq == rot+rot {
			found = true
		}
	}
	if !found {
		t.Errorf("sequence %s is not a rotation of %s repeated", seq, cycle)
	}
}

func TestP2CAvoidsTheBusy(t *testing.T) {
	p, _ := newPool(t, 5, balancer.WithAlgorithm(&balancer.P2C{}))
	// Hold ten requests on b00, placed there by a pick function.
	p.SetPickFunc(func(*balancer.Request, []*balancer.Backend) (int, error) { return 0, nil })
	for range 10 {
		if _, err := p.Pick(nil); err != nil {
			t.Fatal(err)
		}
	}
	p.SetPickFunc(nil)
	counts := map[string]int{}
	for range 2000 {
		counts[pickDone(t, p, nil, balancer.Outcome{Status: 200})]++
	}
	if counts["b00"] != 0 {
		t.Errorf("busy backend got %d of 2000 picks, want 0 (its rival is always idler)", counts["b00"])
	}
	delete(counts, "b00")
	shares := map[string]float64{"b01": 0.25, "b02": 0.25, "b03": 0.25, "b04": 0.25}
	if x := chiSquare(counts, shares); x > chiSquareCritical001[3] {
		t.Errorf("the idle backends are not picked evenly: %v (chi-square %.2f)", counts, x)
	}
}

func TestHashBoundedLoad(t *testing.T) {
	for _, eps := range []float64{0.1, 0.25, 1} {
		t.Run(fmt.Sprintf("eps=%v", eps), func(t *testing.T) {
			p, _ := newPool(t, 10, balancer.WithAlgorithm(&balancer.Hash{Epsilon: eps}))
			const m = 2000
			// Skewed keys: half the traffic is one tenant.
			for i := range m {
				key := fmt.Sprintf("tenant-%d", i)
				if i%2 == 0 {
					key = "hot-tenant"
				}
				if _, err := p.Pick(&balancer.Request{Key: key}); err != nil {
					t.Fatal(err)
				}
				// Every backend stays within (1+ε) times the average at every step.
				bound := int64(math.Ceil((1 + eps) * float64(i+1) / 10))
				for _, b := range p.Backends() {
					if b.InFlight() > bound {
						t.Fatalf("after %d picks %s has %d in flight, bound %d", i+1, b.ID(), b.InFlight(), bound)
					}
				}
			}
		})
	}
}

func TestHashKeepsKeys(t *testing.T) {
	const keys = 2000
	assign := func(p *balancer.Pool, hold bool) map[string]string {
		out := map[string]string{}
		var held []balancer.Result
		for i := range keys {
			key := fmt.Sprintf("session-%d", i)
			r, err := p.Pick(&balancer.Request{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			out[key] = r.Backend.ID()
			if hold {
				held = append(held, r)
			} else {
				r.Done(balancer.Outcome{Status: 200})
			}
		}
		for _, r := range held {
			r.Done(balancer.Outcome{Status: 200})
		}
		return out
	}
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("loaded=%v", hold), func(t *testing.T) {
			p, _ := newPool(t, 10, balancer.WithAlgorithm(&balancer.Hash{}))
			before := assign(p, hold)
			again := assign(p, hold)
			if diff := cmp.Diff(before, again); diff != "" {
				t.Fatalf("same keys, same pool, different backends:\n%s", diff)
			}
			eps := endpoints(10)
			removed := eps[3].ID
			if err := p.Update(append(eps[:3:3], eps[4:]...)); err != nil {
				t.Fatal(err)
			}
			after := assign(p, hold)
			var kept, survivors, onRemoved int
			for k, b := range before {
				if b == removed {
					onRemoved++
					continue
				}
				survivors++
				if after[k] == b {
					kept++
				}
			}
			overall := float64(kept) / keys
			t.Logf("removed %s held %d keys (%.1f%%); kept %d of %d keys on survivors; %.1f%% of all keys stayed",
				removed, onRemoved, 100*float64(onRemoved)/keys, kept, survivors, 100*overall)
			if frac := float64(kept) / float64(survivors); frac < 0.9 {
				t.Errorf("kept %.1f%% of the keys whose backend stayed, want at least 90%%", 100*frac)
			}
			// The ring is a function of the ids, so this is deterministic: at best
			// every key not on the removed backend stays (1 - its share).
			if overall < 0.9 {
				t.Errorf("%.1f%% of all keys stayed, want at least 90%%", 100*overall)
			}
		})
	}
}

func TestHashSpreadsKeysByWeight(t *testing.T) {
	p, _ := newPool(t, 0, balancer.WithAlgorithm(&balancer.Hash{Epsilon: -1}))
	eps := endpoints(4)
	eps[0].Weight = 4
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := range 20000 {
		counts[pickDone(t, p, &balancer.Request{Key: fmt.Sprint("k", i)}, balancer.Outcome{Status: 200})]++
	}
	// Ring shares vary with the points; within 25% of the weight's share.
	for id, want := range map[string]float64{"b00": 4.0 / 7, "b01": 1.0 / 7, "b02": 1.0 / 7, "b03": 1.0 / 7} {
		got := float64(counts[id]) / 20000
		if math.Abs(got-want) > 0.25*want {
			t.Errorf("%s: share %.3f, want %.3f±25%%", id, got, want)
		}
	}
}

func TestSlowStartRamps(t *testing.T) {
	p, clock := newPool(t, 0,
		balancer.WithAlgorithm(&balancer.SmoothWeighted{}),
		balancer.WithSlowStart(balancer.SlowStart{Window: 10 * time.Second, Steps: 10}))
	eps := endpoints(3)
	if err := p.Update(eps[:2]); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(eps); err != nil { // b02 joins at t0
		t.Fatal(err)
	}
	share := func() float64 {
		n := 0
		for range 2100 {
			if pickDone(t, p, nil, balancer.Outcome{Status: 200, At: clock.Now()}) == "b02" {
				n++
			}
		}
		return float64(n) / 2100
	}
	tests := []struct {
		at   time.Duration
		want float64 // b02's share: f / (2 + f)
	}{
		{0, 0.1 / 2.1}, // the minimum weight, 10%
		{5 * time.Second, 0.5 / 2.5},
		{9500 * time.Millisecond, 0.9 / 2.9}, // quantized to the 9 s step
		{10 * time.Second, 1.0 / 3},
	}
	for _, tt := range tests {
		clock.Set(t0.Add(tt.at))
		// The first Done after the step rebuilds; the shares are then exact.
		pickDone(t, p, nil, balancer.Outcome{Status: 200, At: clock.Now()})
		if got := share(); math.Abs(got-tt.want) > 0.002 {
			t.Errorf("at %v: share %.4f, want %.4f", tt.at, got, tt.want)
		}
	}
	// The first members did not ramp.
	q, _ := newPool(t, 3, balancer.WithSlowStart(balancer.SlowStart{Window: time.Minute}))
	if st := q.Stats(); st.Ready != 3 {
		t.Fatalf("ready = %d", st.Ready)
	}
}

func TestPeakEWMAColdBackends(t *testing.T) {
	p, clock := newPool(t, 2, balancer.WithAlgorithm(&balancer.PeakEWMA{}))
	a, _ := p.Lookup("b00")
	b, _ := p.Lookup("b01")
	// One measured request on a.
	p.SetPickFunc(func(*balancer.Request, []*balancer.Backend) (int, error) { return 0, nil })
	pickDone(t, p, nil, balancer.Outcome{Status: 200, Latency: 10 * time.Millisecond, At: clock.Now()})
	p.SetPickFunc(nil)
	req := &balancer.Request{Now: clock.Now()}
	// b has no sample and nothing in flight: it costs nothing, so it is tried.
	r, err := p.Pick(req)
	if err != nil || r.Backend != b {
		t.Fatalf("picked %v, want the untried b01", r.Backend)
	}
	// Now b is busy without a sample: it costs the penalty, so a wins.
	for range 10 {
		if got, _ := p.Pick(req); got.Backend != a {
			t.Fatalf("picked %v while b01 is busy and unmeasured, want b00", got.Backend)
		} else {
			got.Done(balancer.Outcome{Status: 200, Latency: 10 * time.Millisecond, At: clock.Now()})
		}
	}
}

func TestAvoid(t *testing.T) {
	algs := []balancer.Algorithm{balancer.RoundRobin{}, &balancer.SmoothWeighted{}, balancer.Random{}, &balancer.P2C{}, &balancer.PeakEWMA{}, &balancer.Hash{}}
	for _, alg := range algs {
		t.Run(fmt.Sprintf("%T", alg), func(t *testing.T) {
			p, _ := newPool(t, 3, balancer.WithAlgorithm(alg))
			for i := range 50 {
				req := &balancer.Request{Key: fmt.Sprint("k", i)}
				first := pickDone(t, p, req, balancer.Outcome{Status: 200})
				b, _ := p.Lookup(first)
				req.Avoid = b
				if again := pickDone(t, p, req, balancer.Outcome{Status: 200}); again == first {
					t.Fatalf("key k%d: retry went back to %s", i, first)
				}
			}
		})
	}
}
