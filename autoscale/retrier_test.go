package autoscale_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/autoscalelua/autoscalelua/autoscale"
)

// TestOneRetrier checks that the loop is the only retrier: one failing decision sent
// through the webhook actuator to a real webhook receiver (over httptest) makes at
// most the loop's configured attempts, in total, however the loop is configured.
// Before, the webhook actuator retried inside each of the loop's attempts (5 × 5 = 25
// POSTs with the defaults).
func TestOneRetrier(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name      string
		actuation *autoscale.Actuation // nil: the defaults
		want      int
	}{
		{"defaults", nil, autoscale.DefaultAttempts},
		{"one attempt", &autoscale.Actuation{Attempts: 1}, 1},
		{"three attempts", &autoscale.Actuation{Attempts: 3, RetryBase: time.Millisecond, RetryMax: time.Millisecond}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The receiver's own actuator always fails transiently, so the receiver
			// answers 502 and the sender's error is retryable.
			rcv, err := webhook.NewReceiver(secret, actuator.Func(func(context.Context, actuator.Request) error {
				return errors.New("apiserver unavailable")
			}), webhook.WithReceiverLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			var posts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts.Add(1)
				rcv.ServeHTTP(w, r)
			}))
			defer srv.Close()
			hook, err := webhook.New(srv.URL, secret, webhook.WithLogger(quiet))
			if err != nil {
				t.Fatal(err)
			}
			defer hook.CloseIdleConnections()

			opts := []autoscale.Option{
				autoscale.WithPolicy(scaleTo("a", 3)),
				autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Actuator: hook, Safety: free}),
				autoscale.WithRand(zeroSource{}), // zero back-off: the test does not wait
				autoscale.WithLogger(quiet),
			}
			if tc.actuation != nil {
				opts = append(opts, autoscale.WithActuation(*tc.actuation))
			}
			l := newLoop(t, opts...)
			d := step(t, l, t0).Decisions[0]
			flush(t, l)
			got, _ := l.Decision(d.ID)
			if got.Actuation.Attempts != tc.want || !strings.Contains(got.Actuation.Err, "502") {
				t.Errorf("actuation = %+v, want %d failed attempts ending in a 502", got.Actuation, tc.want)
			}
			if n := int(posts.Load()); n != tc.want {
				t.Errorf("the receiver saw %d POSTs for one failing decision, want %d", n, tc.want)
			}
		})
	}
}
