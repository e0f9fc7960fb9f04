package actuator_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	const base, maxD = 100 * time.Millisecond, 5 * time.Second
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0.5, 50 * time.Millisecond},
		{1, 0.5, 100 * time.Millisecond},
		{2, 0.999999, 399999600 * time.Nanosecond},
		{5, 0.5, 1600 * time.Millisecond},
		{6, 0.5, 2500 * time.Millisecond}, // capped: 6.4s > 5s
		{62, 0.5, 2500 * time.Millisecond},
		{1000, 0.5, 2500 * time.Millisecond},
		{-3, 0.5, 50 * time.Millisecond},
		{3, 0, 0},
		{3, 1, 0},  // out of range treated as 0
		{3, -1, 0}, // out of range treated as 0
		{3, math.NaN(), 0},
	}
	for _, tt := range tests {
		if got := actuator.Backoff(tt.attempt, base, maxD, tt.r); got != tt.want {
			t.Errorf("Backoff(%d, r=%v) = %v, want %v", tt.attempt, tt.r, got, tt.want)
		}
	}
}

// flaky fails with errs[i] on call i and succeeds afterwards.
type flaky struct {
	actuatortest.Recorder
	errs []error
	n    int
}

func (f *flaky) Scale(ctx context.Context, req actuator.Request) error {
	_ = f.Recorder.Scale(ctx, req)
	f.n++
	if f.n <= len(f.errs) {
		return f.errs[f.n-1]
	}
	return nil
}

func TestRetry(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name       string
		errs       []error
		opts       []actuator.RetryOption
		wantCalls  int
		wantSleeps []time.Duration
		wantErr    error // nil means success; else errors.Is target
		wantPerm   bool
	}{
		{
			name:      "first try",
			wantCalls: 1,
		},
		{
			name:       "two failures then success",
			errs:       []error{boom, boom},
			wantCalls:  3,
			wantSleeps: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		},
		{
			name:       "exhausted after default five attempts",
			errs:       []error{boom, boom, boom, boom, boom, boom},
			wantCalls:  5,
			wantSleeps: []time.Duration{50, 100, 200, 400},
			wantErr:    boom,
		},
		{
			name:      "permanent stops at once",
			errs:      []error{actuator.Permanent(boom)},
			wantCalls: 1,
			wantErr:   boom,
			wantPerm:  true,
		},
		{
			name:       "permanent after a retryable failure",
			errs:       []error{boom, actuator.Permanent(boom)},
			wantCalls:  2,
			wantSleeps: []time.Duration{50 * time.Millisecond},
			wantErr:    boom,
			wantPerm:   true,
		},
		{
			name:       "custom attempts and backoff, capped",
			errs:       []error{boom, boom, boom, boom},
			opts:       []actuator.RetryOption{actuator.WithAttempts(4), actuator.WithBackoff(time.Second, 3*time.Second)},
			wantCalls:  4,
			wantSleeps: []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond},
			wantErr:    boom,
		},
		{
			name:       "retry-after longer than the back-off is waited",
			errs:       []error{actuator.RetryAfter(boom, 2*time.Second), boom},
			wantCalls:  3,
			wantSleeps: []time.Duration{2 * time.Second, 100 * time.Millisecond},
		},
		{
			name:       "retry-after shorter than the back-off is not",
			errs:       []error{actuator.RetryAfter(boom, 10*time.Millisecond)},
			wantCalls:  2,
			wantSleeps: []time.Duration{50 * time.Millisecond},
		},
		{
			name:       "retry-after capped by the maximum delay",
			errs:       []error{actuator.RetryAfter(boom, time.Hour)},
			wantCalls:  2,
			wantSleeps: []time.Duration{actuator.DefaultRetryMaxDelay},
		},
		{
			name:       "retry-after capped by a custom maximum delay",
			errs:       []error{actuator.RetryAfter(boom, time.Hour)},
			opts:       []actuator.RetryOption{actuator.WithBackoff(time.Second, 3*time.Second)},
			wantCalls:  2,
			wantSleeps: []time.Duration{3 * time.Second},
		},
		{
			name:       "retry-after seen through wrapping",
			errs:       []error{fmt.Errorf("post: %w", actuator.RetryAfter(boom, 2*time.Second))},
			wantCalls:  2,
			wantSleeps: []time.Duration{2 * time.Second},
		},
		{
			name:      "retry-after on a permanent error does not retry",
			errs:      []error{actuator.RetryAfter(actuator.Permanent(boom), time.Second)},
			wantCalls: 1,
			wantErr:   boom,
			wantPerm:  true,
		},
		{
			name:      "attempts below one mean one",
			errs:      []error{boom},
			opts:      []actuator.RetryOption{actuator.WithAttempts(0)},
			wantCalls: 1,
			wantErr:   boom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The exhausted case lists its sleeps in milliseconds for brevity.
			for i, d := range tt.wantSleeps {
				if d < time.Millisecond {
					tt.wantSleeps[i] = d * time.Millisecond
				}
			}
			f := &flaky{errs: tt.errs}
			clk := metrics.NewManualClock(time.Unix(0, 0))
			opts := append([]actuator.RetryOption{actuator.WithRand(half), actuator.WithClock(clk)}, tt.opts...)
			a, err := actuator.Retry(f, opts...)
			if err != nil {
				t.Fatal(err)
			}
			sleeps, err := scaleWaiting(t, a, clk)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Scale = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Scale = %v, want %v", err, tt.wantErr)
			}
			if actuator.IsPermanent(err) != tt.wantPerm {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, !tt.wantPerm, tt.wantPerm)
			}
			if f.n != tt.wantCalls {
				t.Errorf("calls = %d, want %d", f.n, tt.wantCalls)
			}
			if diff := cmp.Diff(tt.wantSleeps, sleeps); diff != "" {
				t.Errorf("sleeps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryStopsAtContextEnd(t *testing.T) {
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := make(chan struct{}, 10)
	a := mustRetry(t, actuator.Func(func(context.Context, actuator.Request) error {
		called <- struct{}{}
		return boom
	}), actuator.WithBackoff(time.Hour, time.Hour), actuator.WithRand(half))
	errc := make(chan error, 1)
	go func() { errc <- a.Scale(ctx, validRequest()) }()
	<-called // the first attempt failed; Retry now waits 30 minutes
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || !errors.Is(err, boom) {
		t.Fatalf("Scale = %v, want it to wrap context.Canceled and the last failure", err)
	}
	if !strings.Contains(err.Error(), "after 1 attempts") {
		t.Errorf("Scale = %q, want the attempt count", err)
	}
	if n := len(called); n != 0 {
		t.Errorf("%d more calls after cancel, want 0", n)
	}
}

func TestRetryContextErrorFromActuator(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	a := mustRetry(t, actuator.Func(func(ctx context.Context, _ actuator.Request) error {
		calls++
		cancel()
		return ctx.Err()
	}))
	if err := a.Scale(ctx, validRequest()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Scale = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("calls = %d, want 1 (no retry once ctx is done)", calls)
	}
}

func TestRetryReplicaReaderAndNil(t *testing.T) {
	var rec actuatortest.Recorder
	rec.SetReplicas(actuator.Target{Name: "checkout"}, 9)
	rr, ok := mustRetry(t, &rec).(actuator.ReplicaReader)
	if !ok {
		t.Fatal("Retry of a ReplicaReader is not a ReplicaReader")
	}
	if n, err := rr.Replicas(context.Background(), actuator.Target{Name: "checkout"}); err != nil || n != 9 {
		t.Errorf("Replicas = %d, %v; want 9, nil", n, err)
	}
	if _, ok := mustRetry(t, actuator.Func(nil)).(actuator.ReplicaReader); ok {
		t.Error("Retry of a Func claims to be a ReplicaReader")
	}
	_, err := actuator.Retry(nil, actuator.WithRand(nil), actuator.WithClock(nil), nil)
	if !errors.Is(err, actuator.ErrInvalidConfig) {
		t.Fatalf("Retry(nil, bad options) = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"nil actuator", "nil random source", "nil clock", "nil option"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

// half is a random source whose Float64 is always 0.5.
var half = fixedSource(1 << 52)

// fixedSource returns the same number every time: Float64 of it is its low 53 bits
// over 2^53.
type fixedSource uint64

func (s fixedSource) Uint64() uint64 { return uint64(s) }

func mustRetry(t *testing.T, a actuator.Actuator, opts ...actuator.RetryOption) actuator.Actuator {
	t.Helper()
	r, err := actuator.Retry(a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// scaleWaiting calls a.Scale on a goroutine and, each time it waits on clk, advances
// clk to the end of the wait. It returns the waits and Scale's error.
func scaleWaiting(t *testing.T, a actuator.Actuator, clk *metrics.ManualClock) ([]time.Duration, error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- a.Scale(context.Background(), validRequest()) }()
	var waits []time.Duration
	for {
		ctx, cancel := context.WithCancel(context.Background())
		armed := make(chan error, 1)
		go func() { armed <- clk.WaitTimers(ctx, 1) }()
		select {
		case err := <-errc:
			cancel()
			<-armed
			return waits, err
		case <-armed:
			cancel()
			at, _ := clk.NextTimer()
			waits = append(waits, at.Sub(clk.Now()))
			clk.Set(at)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		err      error
		wantWait time.Duration
		wantOK   bool
	}{
		{"nil", actuator.RetryAfter(nil, time.Second), 0, false},
		{"plain", boom, 0, false},
		{"marked", actuator.RetryAfter(boom, time.Second), time.Second, true},
		{"zero wait leaves the error alone", actuator.RetryAfter(boom, 0), 0, false},
		{"negative wait leaves the error alone", actuator.RetryAfter(boom, -time.Second), 0, false},
		{"wrapped", fmt.Errorf("ctx: %w", actuator.RetryAfter(boom, 2*time.Second)), 2 * time.Second, true},
		{"joined", errors.Join(boom, actuator.RetryAfter(boom, 3*time.Second)), 3 * time.Second, true},
		{"outermost wins", actuator.RetryAfter(actuator.RetryAfter(boom, time.Second), 4*time.Second), 4 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, ok := actuator.RetryAfterOf(tt.err)
			if wait != tt.wantWait || ok != tt.wantOK {
				t.Errorf("RetryAfterOf(%v) = %v, %v; want %v, %v", tt.err, wait, ok, tt.wantWait, tt.wantOK)
			}
		})
	}
	marked := actuator.RetryAfter(actuator.Permanent(boom), time.Second)
	if marked.Error() != "boom" || !errors.Is(marked, boom) || !actuator.IsPermanent(marked) {
		t.Errorf("RetryAfter(Permanent(boom)) = %q: want the same text, wrapping boom, still permanent", marked)
	}
	if got := actuator.RetryAfter(boom, 0); got != boom {
		t.Errorf("RetryAfter(boom, 0) = %v, want boom itself", got)
	}
}
