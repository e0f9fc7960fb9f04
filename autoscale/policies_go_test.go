package autoscale

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestHPARecommendation(t *testing.T) {
	tests := []struct {
		name     string
		current  int
		observed float64
		target   float64
		agg      Aggregation
		want     int
		wantErr  error
	}{
		// The Kubernetes documentation's case: 4 ready pods at 80% against a 50% target.
		{name: "HPA anchor: 4 pods, 80% against 50% → 7", current: 4, observed: 80, target: 50, agg: PerReplica, want: 7},
		{name: "within tolerance holds", current: 4, observed: 54, target: 50, agg: PerReplica, want: 4},
		{name: "just outside tolerance scales", current: 4, observed: 56, target: 50, agg: PerReplica, want: 5},
		{name: "scale down", current: 10, observed: 20, target: 50, agg: PerReplica, want: 4},
		{name: "total: 320 over a target of 50 per pod → 7", current: 4, observed: 320, target: 50, agg: Total, want: 7},
		{name: "total within tolerance holds", current: 4, observed: 210, target: 50, agg: Total, want: 4},
		{name: "total from zero", current: 0, observed: 120, target: 50, agg: Total, want: 3},
		{name: "total with unknown current", current: -1, observed: 120, target: 50, agg: Total, want: 3},
		{name: "per replica needs a count", current: 0, observed: 80, target: 50, agg: PerReplica, wantErr: ErrMissingMetrics},
		{name: "NaN is missing", current: 3, observed: nanF(), target: 50, agg: PerReplica, wantErr: ErrMissingMetrics},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HPARecommendation(tc.current, tc.observed, tc.target, DefaultTolerance, tc.agg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func nanF() float64 { z := 0.0; return z / z }

func TestTargetTrackingPolicy(t *testing.T) {
	p, err := TargetTracking(TargetTrackingConfig{
		TargetValue: 50, Aggregation: PerReplica,
		Metric: func(in *Input, ts TargetState) (float64, error) {
			if ts.Name == "b" {
				return 0, ErrMissingMetrics
			}
			return 80, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Now: t0, Targets: []TargetState{{Name: "a", Replicas: 4}, {Name: "b", Replicas: 2}}}
	acts, err := p.Decide(context.Background(), in)
	if !errors.Is(err, ErrMissingMetrics) {
		t.Errorf("err = %v, want ErrMissingMetrics for b", err)
	}
	if len(acts) != 1 || acts[0].(Scale).Target != "a" || acts[0].(Scale).Replicas != 7 {
		t.Errorf("actions = %+v, want one Scale a → 7", acts)
	}
	if _, err := TargetTracking(TargetTrackingConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero config: err = %v, want ErrInvalidConfig", err)
	}
}

func TestKPAPolicyDeclaresPanic(t *testing.T) {
	p, err := KPA(KPAConfig{
		TargetValue: 1, TargetUtilization: 1, PanicThreshold: 2, MaxScaleUpRate: 10, MaxScaleDownRate: 10,
		Metric: func(in *Input, ts TargetState, w time.Duration) (float64, error) {
			if w == DefaultKPAPanicWindow {
				return 25, nil
			}
			return 11, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := p.Decide(context.Background(), &Input{Now: t0, Targets: []TargetState{{Name: "a", Replicas: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	s := acts[0].(Scale)
	if s.Replicas != 25 || !s.Panic {
		t.Fatalf("got %+v, want 25 with panic", s)
	}
	if _, err := KPA(KPAConfig{TargetValue: 1, PanicThreshold: 0.5}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("panic threshold 0.5: err = %v, want ErrInvalidConfig", err)
	}
}
