package webhook_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

// throttling answers every request with status and, when not empty, a
// Retry-After header; it counts the requests.
func throttling(t *testing.T, status int, retryAfter string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "slow down", status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	const maxDelay = time.Minute
	tests := []struct {
		name      string
		status    int
		header    string
		wantField time.Duration // StatusError.RetryAfter
		wantSleep time.Duration // the wait before the second attempt
	}{
		{"429 seconds", http.StatusTooManyRequests, "2", 2 * time.Second, 2 * time.Second},
		{"503 seconds", http.StatusServiceUnavailable, "1", time.Second, time.Second},
		{"zero seconds", http.StatusTooManyRequests, "0", 0, 0},
		{"IMF-fixdate", http.StatusTooManyRequests, now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, 30 * time.Second},
		{"RFC 850 date", http.StatusServiceUnavailable, now.Add(10 * time.Second).Format(time.RFC850), 10 * time.Second, 10 * time.Second},
		{"ANSI C date", http.StatusTooManyRequests, now.Add(20 * time.Second).Format(time.ANSIC), 20 * time.Second, 20 * time.Second},
		{"date in the past", http.StatusTooManyRequests, now.Add(-time.Hour).Format(http.TimeFormat), 0, 0},
		{"capped by the retry policy", http.StatusTooManyRequests, "3600", time.Hour, maxDelay},
		{"too large for a duration", http.StatusTooManyRequests, "99999999999999999999", math.MaxInt64, maxDelay},
		{"not a number", http.StatusTooManyRequests, "soon", 0, 0},
		{"negative", http.StatusTooManyRequests, "-5", 0, 0},
		{"fraction", http.StatusTooManyRequests, "1.5", 0, 0},
		{"no header", http.StatusTooManyRequests, "", 0, 0},
		{"ignored on 500", http.StatusInternalServerError, "5", 0, 0},
		{"ignored on 502", http.StatusBadGateway, "5", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := throttling(t, tt.status, tt.header)
			clock := &instantClock{ManualClock: metrics.NewManualClock(now)}
			a := newActuator(t, srv.URL,
				webhook.WithClock(clock),
				webhook.WithRetry(
					actuator.WithAttempts(2),
					actuator.WithRand(zeroSource{}), // no jitter: the back-off alone waits 0
					actuator.WithBackoff(time.Millisecond, maxDelay),
					actuator.WithClock(clock)))
			err := a.Scale(context.Background(), request("d-1", 5))
			var serr *webhook.StatusError
			if !errors.As(err, &serr) {
				t.Fatalf("Scale = %v, want a *StatusError", err)
			}
			if serr.Code != tt.status || serr.RetryAfter != tt.wantField {
				t.Errorf("StatusError = %d, RetryAfter %v; want %d, %v", serr.Code, serr.RetryAfter, tt.status, tt.wantField)
			}
			want := []time.Duration{tt.wantSleep}
			if tt.wantSleep == 0 {
				want = nil // a wait of zero arms no timer
			}
			if diff := cmp.Diff(want, clock.Waits()); diff != "" {
				t.Errorf("waits before retrying (-want +got):\n%s", diff)
			}
			if got := n.Load(); got != 2 {
				t.Errorf("server saw %d requests, want 2", got)
			}
			if actuator.IsPermanent(err) {
				t.Errorf("Scale = %v: a %d is retryable, not permanent", err, tt.status)
			}
		})
	}
}

// realSleeper is an actuator that waits between attempts with the default
// timer (newActuator's retries do not wait).
func realSleeper(t *testing.T, url string, opts ...actuator.RetryOption) *webhook.Actuator {
	t.Helper()
	a, err := webhook.New(url, secret, webhook.WithRetry(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.CloseIdleConnections)
	return a
}

// TestRetryAfterWaits checks the real timer: after a 429 with Retry-After: 1
// the second attempt comes no sooner than a second later, although the
// back-off alone would wait at most a millisecond.
func TestRetryAfterWaits(t *testing.T) {
	var (
		n     atomic.Int32
		first atomic.Int64 // unix nanos of the first request
		gap   atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			first.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		gap.Store(time.Now().UnixNano() - first.Load())
	}))
	t.Cleanup(srv.Close)
	a := realSleeper(t, srv.URL, actuator.WithBackoff(time.Millisecond, 5*time.Second))
	if err := a.Scale(context.Background(), request("d-1", 5)); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Fatalf("server saw %d requests, want 2", n.Load())
	}
	if g := time.Duration(gap.Load()); g < time.Second {
		t.Errorf("second attempt %v after the 429, want at least the 1s Retry-After", g)
	}
}

// TestRetryAfterEndsWithContext checks that a long Retry-After does not
// outlive the caller's context.
func TestRetryAfterEndsWithContext(t *testing.T) {
	srv, n := throttling(t, http.StatusTooManyRequests, "60")
	a := realSleeper(t, srv.URL, actuator.WithBackoff(time.Millisecond, 5*time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Scale(ctx, request("d-1", 5))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Scale = %v, want it to wrap context.DeadlineExceeded", err)
	}
	var serr *webhook.StatusError
	if !errors.As(err, &serr) || serr.RetryAfter != time.Minute {
		t.Errorf("Scale = %v, want it to wrap the 429 with its 60s Retry-After", err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("Scale took %v: it waited out the Retry-After instead of the context", el)
	}
}

// zeroSource is a random source whose Float64 is always 0.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }
