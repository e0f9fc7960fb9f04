package main

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)

	// The load step scales the platform up through the webhook: at 120 requests
	// per second and 20 per replica, to 6 or so.
	peak := 0
	for _, m := range regexp.MustCompile(`(?m)^platform: shop/checkout \d+ → (\d+) replicas \(decision `).FindAllStringSubmatch(got, -1) {
		n, _ := strconv.Atoi(m[1])
		peak = max(peak, n)
	}
	if peak < 4 {
		t.Errorf("the platform never ran more than %d replicas; the load step should scale it to about 6", peak)
	}
	for _, want := range []string{
		"matches v1: true\n",
		"webhook.VerifySignature: <nil>\n",
		"replay of the same request     → 200 ok, Idempotent-Replayed: true (not applied again)\n",
		"body changed, signature kept   → 401 invalid signature\n",
		"signed with another secret     → 401 invalid signature\n",
		"signed ten minutes ago         → 401 stale or future timestamp\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Every decision the gateway sent was applied once, but for the last one,
	// whose call the end of the run may cancel.
	sent, applied := strings.Count(got, "gateway: "), strings.Count(got, "\nplatform: shop/checkout ")-1
	if applied > sent || applied < sent-1 {
		t.Errorf("gateway sent %d decisions, platform applied %d", sent, applied)
	}
}

// TestInterrupted stops the program early, as Ctrl-C does: it returns at
// once, skips the checks, and leaves no goroutine behind (TestMain).
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(300*time.Millisecond, cancel)
	defer stop.Stop()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, &out, time.Hour); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("run took %v after being interrupted", el)
	}
	if got := out.String(); !strings.HasSuffix(got, "interrupted\n") || strings.Contains(got, "signature of") {
		t.Errorf("output:\n%s\nwant it to end with \"interrupted\" and show no checks", got)
	}
}

// TestSlowLoris opens 50 connections to the scaler's server, set up as run
// sets it up, that send slowly: half trickle their headers, half send
// headers and then trickle the body. The server closes every one of them
// once its timeout has passed (5 s for headers, 10 s for the request), where
// a plain http.Server keeps them open for ever.
func TestSlowLoris(t *testing.T) {
	rcv, err := webhook.NewReceiver([]byte("0123456789abcdef0123456789abcdef"), actuator.Func(func(context.Context, actuator.Request) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	srv := scalerServer(scalerMux(&tap{next: rcv}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()

	const conns = 50
	type result struct {
		body   bool
		closed time.Duration // how long the server kept the connection
		err    error
	}
	results := make(chan result, conns)
	stop := make(chan struct{})
	defer close(stop)
	start := time.Now()
	for i := range conns {
		body := i%2 == 1
		go func() {
			r := result{body: body}
			defer func() { results <- r }()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				r.err = err
				return
			}
			defer c.Close()
			head := "POST /scale HTTP/1.1\r\nHost: scaler\r\n"
			if body {
				head += "Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"
			}
			if _, err := io.WriteString(c, head); err != nil {
				r.err = err
				return
			}
			// Trickle a byte every 100 ms, until the server closes the
			// connection or the test ends.
			go func() {
				tk := time.NewTicker(100 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
						b := "X"
						if body {
							b = " "
						}
						if _, err := io.WriteString(c, b); err != nil {
							return
						}
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.Copy(io.Discard, c) // until the server closes (after an error response, for a body)
			r.closed = time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.err = errors.New("still open after 30 s")
			}
		}()
	}
	for range conns {
		r := <-results
		limit := webhook.ServerReadHeaderTimeout
		if r.body {
			limit = webhook.ServerReadTimeout
		}
		switch {
		case r.err != nil:
			t.Errorf("slow connection (body %v): %v", r.body, r.err)
		case r.closed > limit+3*time.Second:
			t.Errorf("slow connection (body %v) closed after %v, want about %v", r.body, r.closed, limit)
		}
	}
}
