package balancer

import (
	"math"
	"testing"
	"time"
)

func TestSlowStartFactor(t *testing.T) {
	const s = int64(time.Second)
	tests := []struct {
		name     string
		cfg      SlowStart
		since    int64
		now      int64
		want     float64
		wantNext int64
	}{
		{"off", SlowStart{}, 1, 5 * s, 1, 0},
		{"not ramping", SlowStart{Window: 10 * time.Second}, 0, 5 * s, 1, 0},
		{"start: minimum 10%", SlowStart{Window: 10 * time.Second}, 1, 1, 0.1, 1 + s},
		{"linear at half", SlowStart{Window: 10 * time.Second}, 1, 1 + 5*s, 0.5, 1 + 6*s},
		{"quantized to the step", SlowStart{Window: 10 * time.Second}, 1, 1 + 5*s + s/2, 0.5, 1 + 6*s},
		{"aggression 2 at a quarter", SlowStart{Window: 8 * time.Second, Steps: 8, Aggression: 2}, 1, 1 + 2*s, 0.5, 1 + 3*s},
		{"aggression 0.5 at a half", SlowStart{Window: 10 * time.Second, Aggression: 0.5, MinWeightPercent: 1}, 1, 1 + 5*s, 0.25, 1 + 6*s},
		{"min weight 50%", SlowStart{Window: 10 * time.Second, MinWeightPercent: 50}, 1, 1 + 2*s, 0.5, 1 + 3*s},
		{"done", SlowStart{Window: 10 * time.Second}, 1, 1 + 10*s, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next := tt.cfg.factor(tt.since, tt.now)
			if math.Abs(got-tt.want) > 1e-9 || next != tt.wantNext {
				t.Errorf("factor = %v, next %v; want %v, %v", got, next, tt.want, tt.wantNext)
			}
		})
	}
}

func TestIntegerWeights(t *testing.T) {
	tests := []struct {
		name   string
		in     []float64
		maxSum int
		want   []int
	}{
		{"gcd", []float64{4, 6, 2}, 100, []int{2, 3, 1}},
		{"fractions", []float64{1, 0.5}, 1000, []int{2, 1}},
		{"scaled down, at least 1", []float64{1000, 1, 10}, 100, []int{98, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := integerWeights(tt.in, tt.maxSum)
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("integerWeights(%v) = %v, want %v", tt.in, got, tt.want)
				}
			}
		})
	}
}
