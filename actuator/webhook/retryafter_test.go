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

// TestRetryAfterHeader checks that one Scale makes one POST and that its error
// carries the server's Retry-After, on the statuses that send one, for the loop to
// honour.
func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		status    int
		header    string
		wantField time.Duration // StatusError.RetryAfter, and the wait the error carries
	}{
		{"429 seconds", http.StatusTooManyRequests, "2", 2 * time.Second},
		{"503 seconds", http.StatusServiceUnavailable, "1", time.Second},
		{"409 seconds", http.StatusConflict, "1", time.Second},
		{"zero seconds", http.StatusTooManyRequests, "0", 0},
		{"IMF-fixdate", http.StatusTooManyRequests, now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"RFC 850 date", http.StatusServiceUnavailable, now.Add(10 * time.Second).Format(time.RFC850), 10 * time.Second},
		{"ANSI C date", http.StatusTooManyRequests, now.Add(20 * time.Second).Format(time.ANSIC), 20 * time.Second},
		{"date in the past", http.StatusTooManyRequests, now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"an hour: the loop caps it", http.StatusTooManyRequests, "3600", time.Hour},
		{"too large for a duration", http.StatusTooManyRequests, "99999999999999999999", math.MaxInt64},
		{"not a number", http.StatusTooManyRequests, "soon", 0},
		{"negative", http.StatusTooManyRequests, "-5", 0},
		{"fraction", http.StatusTooManyRequests, "1.5", 0},
		{"no header", http.StatusTooManyRequests, "", 0},
		{"ignored on 500", http.StatusInternalServerError, "5", 0},
		{"ignored on 502", http.StatusBadGateway, "5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := throttling(t, tt.status, tt.header)
			a := newActuator(t, srv.URL, webhook.WithClock(metrics.NewManualClock(now)))
			err := a.Scale(context.Background(), request("d-1", 5))
			var serr *webhook.StatusError
			if !errors.As(err, &serr) {
				t.Fatalf("Scale = %v, want a *StatusError", err)
			}
			if serr.Code != tt.status || serr.RetryAfter != tt.wantField {
				t.Errorf("StatusError = %d, RetryAfter %v; want %d, %v", serr.Code, serr.RetryAfter, tt.status, tt.wantField)
			}
			wait, ok := actuator.RetryAfterOf(err)
			if wait != tt.wantField || ok != (tt.wantField > 0) {
				t.Errorf("RetryAfterOf = %v, %v; want %v", wait, ok, tt.wantField)
			}
			if got := n.Load(); got != 1 {
				t.Errorf("server saw %d requests, want 1: the actuator does not retry", got)
			}
			if actuator.IsPermanent(err) {
				t.Errorf("Scale = %v: a %d is retryable, not permanent", err, tt.status)
			}
		})
	}
}
