package actuator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func validRequest() actuator.Request {
	return actuator.Request{
		Target:     actuator.Target{Name: "checkout"},
		Replicas:   3,
		Previous:   2,
		Reason:     "busy",
		DecisionID: "d-1",
		Time:       t0,
	}
}

func TestTargetString(t *testing.T) {
	tests := []struct {
		target actuator.Target
		want   string
	}{
		{actuator.Target{Name: "checkout"}, "checkout"},
		{actuator.Target{Name: "checkout", Namespace: "shop"}, "shop/checkout"},
		{actuator.Target{Name: "checkout", Kind: "deployments.apps"}, "deployments.apps:checkout"},
		{actuator.Target{Name: "checkout", Namespace: "shop", Kind: "deployments.apps"}, "deployments.apps:shop/checkout"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.target.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		name    string
		target  actuator.Target
		wantErr []string // substrings; nil means valid
	}{
		{"name only", actuator.Target{Name: "checkout"}, nil},
		{"all fields", actuator.Target{Name: "checkout", Namespace: "shop", Kind: "deployments.apps"}, nil},
		{"unicode name", actuator.Target{Name: "café"}, nil},
		{"missing name", actuator.Target{Namespace: "shop"}, []string{"name is required"}},
		{"slash in name", actuator.Target{Name: "a/b"}, []string{"target name"}},
		{"slash in namespace", actuator.Target{Name: "a", Namespace: "x/y"}, []string{"target namespace"}},
		{"colon in kind", actuator.Target{Name: "a", Kind: "x:y"}, []string{"target kind"}},
		{"space in name", actuator.Target{Name: "a b"}, []string{"space or control"}},
		{"newline in kind", actuator.Target{Name: "a", Kind: "x\n"}, []string{"space or control"}},
		{"invalid utf8", actuator.Target{Name: "a\xff"}, []string{"UTF-8"}},
		{"too long", actuator.Target{Name: strings.Repeat("a", 254)}, []string{"254 bytes"}},
		{"every problem at once", actuator.Target{Namespace: "x/y", Kind: "k:"}, []string{"name is required", "target namespace", "target kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.target.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, actuator.ErrInvalidRequest) {
				t.Fatalf("Validate() = %v, want ErrInvalidRequest", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*actuator.Request)
		wantErr []string
	}{
		{"valid", func(*actuator.Request) {}, nil},
		{"zero replicas", func(r *actuator.Request) { r.Replicas = 0 }, nil},
		{"previous unknown", func(r *actuator.Request) { r.Previous = -1 }, nil},
		{"empty reason", func(r *actuator.Request) { r.Reason = "" }, nil},
		{"negative replicas", func(r *actuator.Request) { r.Replicas = -1 }, []string{"replicas -1"}},
		{"previous below -1", func(r *actuator.Request) { r.Previous = -2 }, []string{"previous -2"}},
		{"missing decision id", func(r *actuator.Request) { r.DecisionID = "" }, []string{"decision id is required"}},
		{"long decision id", func(r *actuator.Request) { r.DecisionID = strings.Repeat("x", 257) }, []string{"257 bytes"}},
		{"bad utf8 decision id", func(r *actuator.Request) { r.DecisionID = "\xff" }, []string{"UTF-8"}},
		{"zero time", func(r *actuator.Request) { r.Time = time.Time{} }, []string{"time is required"}},
		{"year 0 in UTC", func(r *actuator.Request) { r.Time = time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC) }, nil},
		{"year -1 in UTC", func(r *actuator.Request) { r.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.FixedZone("", 60)) }, []string{"year -1 in UTC"}},
		{"year 10000", func(r *actuator.Request) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"year 10000 in UTC"}},
		{"invalid target", func(r *actuator.Request) { r.Target = actuator.Target{} }, []string{"name is required"}},
		{"everything wrong", func(r *actuator.Request) { *r = actuator.Request{Replicas: -5, Previous: -7} },
			[]string{"name is required", "replicas -5", "previous -7", "decision id", "time is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.mutate(&r)
			err := r.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, actuator.ErrInvalidRequest) {
				t.Fatalf("Validate() = %v, want ErrInvalidRequest", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "invalid request"); n != 1 {
				t.Errorf("Validate() = %q mentions the sentinel %d times, want once", err, n)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"marked", actuator.Permanent(base), true},
		{"wrapped mark", fmt.Errorf("ctx: %w", actuator.Permanent(base)), true},
		{"joined with mark", errors.Join(base, actuator.Permanent(io.EOF)), true},
		{"double mark", actuator.Permanent(actuator.Permanent(base)), true},
		{"context", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := actuator.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if actuator.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	p := actuator.Permanent(base)
	if !errors.Is(p, base) || p.Error() != "boom" {
		t.Errorf("Permanent(base) = %v; want it to wrap base and keep its text", p)
	}
	if got := actuator.Permanent(p); got != p {
		t.Errorf("Permanent of a permanent error wrapped it again: %v", got)
	}
}

func TestFunc(t *testing.T) {
	var got actuator.Request
	f := actuator.Func(func(_ context.Context, r actuator.Request) error { got = r; return nil })
	if err := f.Scale(context.Background(), validRequest()); err != nil {
		t.Fatal(err)
	}
	if got != validRequest() {
		t.Errorf("Func saw %+v, want %+v", got, validRequest())
	}
	var nilFunc actuator.Func
	err := nilFunc.Scale(context.Background(), validRequest())
	if !errors.Is(err, actuator.ErrInvalidRequest) || !actuator.IsPermanent(err) {
		t.Errorf("nil Func Scale = %v, want permanent ErrInvalidRequest", err)
	}
}
