package autoscale

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ask(n int) PolicyOutput { return PolicyOutput{Present: true, Replicas: n} }

func TestSafetyOneStep(t *testing.T) {
	noLimits := Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}}
	tests := []struct {
		name      string
		safety    Safety
		min, max  int
		current   int
		out       PolicyOutput
		want      int
		wantSteps []SafetyStep
	}{
		{
			name: "within bounds passes", safety: noLimits, min: 1, max: 10, current: 3,
			out: ask(5), want: 5, wantSteps: []SafetyStep{},
		},
		{
			name: "max clamps", safety: noLimits, min: 1, max: 10, current: 3,
			out: ask(50), want: 10, wantSteps: []SafetyStep{{Name: StepMax, Before: 50, After: 10}},
		},
		{
			name: "min clamps", safety: noLimits, min: 2, max: 10, current: 3,
			out: ask(0), want: 2, wantSteps: []SafetyStep{{Name: StepMin, Before: 0, After: 2}},
		},
		{
			name: "tolerance holds small change", safety: Safety{Tolerance: 0.1, ScaleUp: &Rules{}, ScaleDown: &Rules{}},
			min: 1, max: 100, current: 20, out: ask(22), want: 20,
			wantSteps: []SafetyStep{{Name: StepTolerance, Before: 22, After: 20}},
		},
		{
			name: "tolerance lets large change through", safety: Safety{Tolerance: 0.1, ScaleUp: &Rules{}, ScaleDown: &Rules{}},
			min: 1, max: 100, current: 20, out: ask(23), want: 23, wantSteps: []SafetyStep{},
		},
		{
			name: "default up: max(4 pods, 100%) from 1 is 5", min: 1, max: 100, current: 1,
			out: ask(40), want: 5, wantSteps: []SafetyStep{{Name: StepRateUp, Before: 40, After: 5}},
		},
		{
			name: "default up: max(4 pods, 100%) from 10 is 20", min: 1, max: 100, current: 10,
			out: ask(40), want: 20, wantSteps: []SafetyStep{{Name: StepRateUp, Before: 40, After: 20}},
		},
		{
			name: "select min takes the smaller limit", min: 1, max: 100, current: 10,
			safety: Safety{ScaleUp: &Rules{Select: SelectMin, Policies: []RatePolicy{
				{Kind: Percent, Value: 100, Period: 15 * time.Second}, {Kind: Pods, Value: 4, Period: 15 * time.Second},
			}}},
			out: ask(40), want: 14, wantSteps: []SafetyStep{{Name: StepRateUp, Before: 40, After: 14}},
		},
		{
			name: "select disabled forbids scaling up", min: 1, max: 100, current: 10,
			safety: Safety{ScaleUp: &Rules{Select: SelectDisabled}},
			out:    ask(40), want: 10, wantSteps: []SafetyStep{{Name: StepRateUp, Before: 40, After: 10}},
		},
		{
			name: "default down holds on the first tick (stabilization seeded with current)", min: 1, max: 100, current: 10,
			out: ask(2), want: 10, wantSteps: []SafetyStep{{Name: StepStabilizeDown, Before: 2, After: 10}},
		},
		{
			name: "down rate: 50% per minute", min: 1, max: 100, current: 10,
			safety: Safety{ScaleDown: &Rules{Policies: []RatePolicy{{Kind: Percent, Value: 50, Period: time.Minute}}}},
			out:    ask(1), want: 5, wantSteps: []SafetyStep{{Name: StepRateDown, Before: 1, After: 5}},
		},
		{
			name: "down rate: 3 pods per minute", min: 0, max: 100, current: 10,
			safety: Safety{ScaleDown: &Rules{Policies: []RatePolicy{{Kind: Pods, Value: 3, Period: time.Minute}}}},
			out:    ask(0), want: 7, wantSteps: []SafetyStep{{Name: StepRateDown, Before: 0, After: 7}},
		},
		{
			name: "panic forbids scale-down", safety: noLimits, min: 1, max: 100, current: 10,
			out: PolicyOutput{Present: true, Replicas: 4, Panic: true}, want: 10,
			wantSteps: []SafetyStep{{Name: StepPanic, Before: 4, After: 10}},
		},
		{
			name: "panic allows scale-up", safety: noLimits, min: 1, max: 100, current: 10,
			out: PolicyOutput{Present: true, Replicas: 14, Panic: true}, want: 14, wantSteps: []SafetyStep{},
		},
		{
			name: "failure holds", safety: noLimits, min: 1, max: 100, current: 7,
			out: PolicyOutput{Err: "boom"}, want: 7, wantSteps: []SafetyStep{{Name: StepHold, Before: 7, After: 7}},
		},
		{
			name: "failure falls back after threshold 1", min: 1, max: 100, current: 7,
			safety: Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}, Fallback: &Fallback{FailureThreshold: 1, Replicas: 12}},
			out:    PolicyOutput{Err: "boom"}, want: 12, wantSteps: []SafetyStep{{Name: StepFallback, Before: 7, After: 12}},
		},
		{
			name: "no opinion keeps current", safety: noLimits, min: 1, max: 100, current: 7,
			out: PolicyOutput{}, want: 7, wantSteps: []SafetyStep{},
		},
		{
			name: "no opinion below min rises to min", safety: noLimits, min: 3, max: 100, current: 1,
			out: PolicyOutput{}, want: 3, wantSteps: []SafetyStep{{Name: StepMin, Before: 1, After: 3}},
		},
		{
			name: "unknown current: clamp only", min: 1, max: 10, current: -1,
			out: ask(40), want: 10, wantSteps: []SafetyStep{{Name: StepMax, Before: 40, After: 10}},
		},
		{
			name: "unknown current and no opinion: nothing", min: 1, max: 10, current: -1,
			out: PolicyOutput{}, want: -1, wantSteps: []SafetyStep{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(Target{Name: "a", Min: tc.min, Max: tc.max, Safety: tc.safety})
			got, steps := tg.safe(t0, tc.current, tc.out)
			if got != tc.want {
				t.Errorf("desired = %d, want %d (steps %+v)", got, tc.want, steps)
			}
			if diff := cmp.Diff(tc.wantSteps, steps, cmp.Comparer(func(a, b SafetyStep) bool {
				return a.Name == b.Name && a.Before == b.Before && a.After == b.After
			})); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSafetySequences drives the safety layer over several ticks, as the HPA's
// behaviour does over its sync periods.
func TestSafetySequences(t *testing.T) {
	type tick struct {
		at      time.Duration // since t0
		current int
		out     PolicyOutput
		want    int
		apply   bool // record the result as applied
	}
	tests := []struct {
		name   string
		safety Safety
		ticks  []tick
	}{
		{
			name:   "down stabilization keeps the highest recommendation for 300s",
			safety: Safety{ScaleUp: &Rules{}},
			ticks: []tick{
				{at: 0, current: 10, out: ask(10), want: 10},
				{at: 60 * time.Second, current: 10, out: ask(8), want: 10},
				{at: 120 * time.Second, current: 10, out: ask(4), want: 10},
				{at: 301 * time.Second, current: 10, out: ask(4), want: 8, apply: true}, // the 10s left the window; 8 remains
				{at: 361 * time.Second, current: 8, out: ask(4), want: 4, apply: true},
			},
		},
		{
			name:   "up stabilization takes the lowest recommendation",
			safety: Safety{ScaleUp: &Rules{StabilizationWindow: 30 * time.Second}, ScaleDown: &Rules{}},
			ticks: []tick{
				{at: 0, current: 2, out: ask(2), want: 2},
				{at: 10 * time.Second, current: 2, out: ask(6), want: 2},
				{at: 20 * time.Second, current: 2, out: ask(5), want: 2},
				{at: 31 * time.Second, current: 2, out: ask(6), want: 5, apply: true},
			},
		},
		{
			name:   "rate limit counts the changes within the period",
			safety: Safety{ScaleUp: &Rules{Policies: []RatePolicy{{Kind: Pods, Value: 4, Period: 60 * time.Second}}}, ScaleDown: &Rules{}},
			ticks: []tick{
				{at: 0, current: 2, out: ask(20), want: 6, apply: true},
				{at: 10 * time.Second, current: 6, out: ask(20), want: 6},
				{at: 59 * time.Second, current: 6, out: ask(20), want: 6},
				{at: 61 * time.Second, current: 6, out: ask(20), want: 10, apply: true},
			},
		},
		{
			name:   "cooldown after a change",
			safety: Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}, Cooldown: time.Minute},
			ticks: []tick{
				{at: 0, current: 2, out: ask(4), want: 4, apply: true},
				{at: 30 * time.Second, current: 4, out: ask(8), want: 4},
				{at: 61 * time.Second, current: 4, out: ask(8), want: 8, apply: true},
			},
		},
		{
			name:   "fallback after three failures, reset by a success",
			safety: Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}, Fallback: &Fallback{FailureThreshold: 3, Replicas: 9}},
			ticks: []tick{
				{at: 0, current: 4, out: PolicyOutput{Err: "x"}, want: 4},
				{at: time.Second, current: 4, out: PolicyOutput{Err: "x"}, want: 4},
				{at: 2 * time.Second, current: 4, out: PolicyOutput{Err: "x"}, want: 9, apply: true},
				{at: 3 * time.Second, current: 9, out: ask(5), want: 5, apply: true},
				{at: 4 * time.Second, current: 5, out: PolicyOutput{Err: "x"}, want: 5},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(Target{Name: "a", Min: 0, Max: 100, Safety: tc.safety})
			for i, k := range tc.ticks {
				now := t0.Add(k.at)
				got, steps := tg.safe(now, k.current, k.out)
				if got != k.want {
					t.Fatalf("tick %d at %v: desired = %d, want %d (steps %+v)", i, k.at, got, k.want, steps)
				}
				if k.apply {
					tg.applied(now, k.current, got)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		target  Target
		wantErr bool
	}{
		{"ok", Target{Name: "a", Min: 1, Max: 3}, false},
		{"no name", Target{Min: 1, Max: 3}, true},
		{"max zero", Target{Name: "a"}, true},
		{"min above max", Target{Name: "a", Min: 4, Max: 3}, true},
		{"bad tolerance", Target{Name: "a", Max: 3, Safety: Safety{Tolerance: 2}}, true},
		{"bad rule", Target{Name: "a", Max: 3, Safety: Safety{ScaleUp: &Rules{Policies: []RatePolicy{{Kind: Pods, Value: 0, Period: time.Second}}}}}, true},
		{"bad period", Target{Name: "a", Max: 3, Safety: Safety{ScaleDown: &Rules{Policies: []RatePolicy{{Kind: Pods, Value: 1}}}}}, true},
		{"bad fallback", Target{Name: "a", Max: 3, Safety: Safety{Fallback: &Fallback{}}}, true},
		{"bad ref", Target{Name: "a/b", Max: 3}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.target.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
