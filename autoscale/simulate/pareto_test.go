package simulate_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestPareto checks a Pareto's sample mean, its shortest draw and its tail
// P(X > x) = (xm/x)^alpha against the analytic values, that the same source gives
// the same draws, and that bad parameters are refused.
func TestPareto(t *testing.T) {
	const mean = 100 * time.Millisecond
	for _, alpha := range []float64{2.5, 4} {
		d, err := simulate.NewPareto(mean, alpha)
		if err != nil {
			t.Fatal(err)
		}
		xm := float64(mean) * (alpha - 1) / alpha
		if d.Mean() != mean || d.Alpha() != alpha || math.Abs(float64(d.Scale())-xm) > 1 {
			t.Fatalf("mean %v, alpha %v, scale %v; want %v, %v, %v", d.Mean(), d.Alpha(), d.Scale(), mean, alpha, time.Duration(xm))
		}
		r := rand.New(rand.NewPCG(1, 2))
		const n = 2_000_000
		var sum float64
		lo := time.Duration(math.MaxInt64)
		over := map[float64]int{2: 0, 4: 0, 10: 0}
		for range n {
			x := d.Sample(r)
			sum += float64(x)
			lo = min(lo, x)
			for k := range over {
				if float64(x) > k*xm {
					over[k]++
				}
			}
		}
		if got := sum / n; math.Abs(got-float64(mean))/float64(mean) > 0.01 {
			t.Errorf("alpha %v: sample mean %v, want %v within 1%%", alpha, time.Duration(got), mean)
		}
		if float64(lo) < xm-1 {
			t.Errorf("alpha %v: a draw of %v below the scale %v", alpha, lo, time.Duration(xm))
		}
		for k, c := range over {
			want := math.Pow(1/k, alpha)
			got := float64(c) / n
			// Binomial standard error, at 5 of them.
			if se := math.Sqrt(want * (1 - want) / n); math.Abs(got-want) > 5*se {
				t.Errorf("alpha %v: P(X > %v xm) = %.5f, want %.5f", alpha, k, got, want)
			}
		}
		a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
		for i := range 100 {
			if x, y := d.Sample(a), d.Sample(b); x != y {
				t.Fatalf("draw %d: %v and %v from the same source", i, x, y)
			}
		}
	}
	for _, bad := range []struct {
		mean  time.Duration
		alpha float64
	}{{0, 2}, {-time.Second, 2}, {mean, 1}, {mean, 0.5}, {mean, math.NaN()}, {mean, math.Inf(1)}} {
		if _, err := simulate.NewPareto(bad.mean, bad.alpha); !errors.Is(err, simulate.ErrInvalidConfig) {
			t.Errorf("NewPareto(%v, %v): err = %v, want ErrInvalidConfig", bad.mean, bad.alpha, err)
		}
	}
}

// TestHeavyTailScenarios checks the two heavy-tailed scenarios' service times: the
// same 100 ms mean as the default, and the share of draws slower than the 500 ms SLO
// their descriptions state (1.8% and 0.5%).
func TestHeavyTailScenarios(t *testing.T) {
	for _, tt := range []struct {
		name string
		slow float64
	}{{"heavy-tail", 0.0175}, {"pareto-tail", 0.0050}} {
		sc, ok := simulate.ScenarioByName(tt.name)
		if !ok {
			t.Fatalf("no scenario %q", tt.name)
		}
		d := sc.Service.ServiceTime
		if d.Mean() != 100*time.Millisecond {
			t.Errorf("%s: mean %v, want 100ms", tt.name, d.Mean())
		}
		r := rand.New(rand.NewPCG(3, 3))
		const n = 1_000_000
		var sum float64
		slow := 0
		for range n {
			x := d.Sample(r)
			sum += float64(x)
			if x > simulate.DefaultSLO {
				slow++
			}
		}
		if got := time.Duration(sum / n); math.Abs(float64(got-100*time.Millisecond)) > float64(2*time.Millisecond) {
			t.Errorf("%s: sample mean %v, want 100ms within 2ms", tt.name, got)
		}
		if got := float64(slow) / n; math.Abs(got-tt.slow) > 0.0005 {
			t.Errorf("%s: %.4f slower than the SLO, want %.4f", tt.name, got, tt.slow)
		}
	}
}
