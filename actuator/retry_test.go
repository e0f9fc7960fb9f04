package actuator_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
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
