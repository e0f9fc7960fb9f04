// Command webhook runs both ends of the webhook actuator in one process: a
// gateway's scaling loop that sends its decisions as signed HTTP requests
// (actuator/webhook.Actuator), and the scaler that receives them
// (webhook.Receiver) on a loopback port and applies them to a tiny in-memory
// platform, which prints one line per scale request it applies.
//
// The gateway records a load step in a metrics window: 20 requests per second,
// then 120 from a fifth to half of the run, then 20 again. The loop holds 20
// requests per second per replica (the Kubernetes HPA's algorithm), so it
// scales the platform up to about 6 replicas and back down. After the run the
// program shows the signature scheme at work on a captured request: the HMAC
// recomputed by hand, a replay answered without being applied again, and a
// tampered body, a wrong secret and a stale timestamp all refused.
//
// The scaler serves the receiver with webhook.NewServer, whose timeouts stop
// clients that send slowly (TestSlowLoris): an http.Server without them
// keeps such a connection open for ever.
//
//	go run ./examples/webhook               # runs for 4 s
//	go run ./examples/webhook -duration 10s # or until Ctrl-C
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func main() {
	duration := flag.Duration("duration", 4*time.Second, "how long the load runs before the program shows the signature checks and exits")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: webhook [flags]\n\nA gateway loop scaling a platform through signed webhooks.\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *duration <= 0 {
		fmt.Fprintln(os.Stderr, "webhook: -duration must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *duration); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// The load step and the policy's goal.
const (
	baseRate   = 20.0  // requests per second before and after the step
	peakRate   = 120.0 // requests per second during the step
	perReplica = 20.0  // requests per second one replica should take
)

// printer serialises lines written from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// platform is the scaler's side: it "runs" replicas by keeping their count.
// A real one would call the Kubernetes API (actuator/kubernetes) or a cloud's.
type platform struct {
	out *printer

	mu       sync.Mutex
	replicas map[actuator.Target]int
	applied  int
}

func (p *platform) Scale(ctx context.Context, req actuator.Request) error {
	if err := req.Validate(); err != nil {
		return actuator.Permanent(err)
	}
	if err := ctx.Err(); err != nil { // the sender gave up; it will send again
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	from, ok := p.replicas[req.Target]
	if !ok {
		from = 1
	}
	p.replicas[req.Target] = req.Replicas
	p.applied++
	p.out.printf("platform: %s %d → %d replicas (decision %s: %s)\n", req.Target, from, req.Replicas, req.DecisionID, req.Reason)
	return nil
}

func (p *platform) state(t actuator.Target) (replicas, applied int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replicas[t], p.applied
}

var _ actuator.Actuator = (*platform)(nil)

// captured is one request as the receiver saw it.
type captured struct {
	body      []byte
	signature string
	key       string
}

// tap keeps the first request that reaches the receiver, for the signature
// demonstration, and counts the requests being handled.
type tap struct {
	next     http.Handler
	inFlight atomic.Int64

	mu    sync.Mutex
	first *captured
}

func (t *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t.inFlight.Add(1)
	defer t.inFlight.Add(-1)
	body, err := io.ReadAll(io.LimitReader(r.Body, webhook.DefaultMaxBodyBytes+1))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	t.mu.Lock()
	if t.first == nil {
		t.first = &captured{body: body, signature: r.Header.Get(webhook.SignatureHeader), key: r.Header.Get(webhook.IdempotencyKeyHeader)}
	}
	t.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	t.next.ServeHTTP(w, r)
}

func (t *tap) captured() *captured {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first
}

// run starts the receiver, runs the loop and the load for d (or until ctx
// ends), then demonstrates the signature checks and shuts everything down.
func run(ctx context.Context, out io.Writer, d time.Duration) error {
	p := &printer{w: out}
	secret := make([]byte, 32)
	_, _ = crand.Read(secret) // crypto/rand.Read never fails
	target := actuator.Target{Name: "checkout", Namespace: "shop"}

	// The scaler: a Receiver in front of the platform, on a loopback port.
	plat := &platform{out: p, replicas: map[actuator.Target]int{}}
	rcv, err := webhook.NewReceiver(secret, plat)
	if err != nil {
		return err
	}
	tp := &tap{next: rcv}
	mux := scalerMux(tp)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("webhook example: listen: %w", err)
	}
	srv := scalerServer(mux)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()
	url := "http://" + ln.Addr().String() + "/scale"
	p.printf("scaler: webhook receiver listening on %s\n", url)

	// The gateway: a metrics window, a scaling loop, and the webhook actuator.
	clock := metrics.NewSystemClock()
	reg, err := metrics.NewRegistry(metrics.WithClock(clock),
		metrics.WithWindow(metrics.WindowConfig{Width: 100 * time.Millisecond, Buckets: 100}))
	if err != nil {
		return err
	}
	// One POST per attempt; the loop below is the one retrier.
	hook, err := webhook.New(url, secret, webhook.WithTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer hook.CloseIdleConnections()
	policy, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source:      autoscale.Source{Signal: autoscale.SignalRate},
		Span:        time.Second,
		TargetValue: perReplica,
	})
	if err != nil {
		return err
	}
	start := clock.Now()
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(policy),
		autoscale.WithRegistry(reg),
		autoscale.WithClock(clock),
		autoscale.WithTick(200*time.Millisecond),
		autoscale.WithActuation(autoscale.Actuation{Timeout: 3 * time.Second, Attempts: 3,
			RetryBase: 50 * time.Millisecond, RetryMax: time.Second}),
		autoscale.WithTargets(autoscale.Target{
			Name: "checkout", Ref: target, Min: 1, Max: 10, Actuator: hook,
			// Up at once; down after 0.5 s of lower recommendations (the HPA waits 300 s).
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{StabilizationWindow: 500 * time.Millisecond}},
		}),
		autoscale.WithObserver(func(tk autoscale.Tick) {
			for _, dec := range tk.Decisions {
				if dec.Applied {
					p.printf("gateway:  t=%4.1fs %s %s → %d replicas, POST %s\n",
						dec.Time.Sub(start).Seconds(), dec.Target, from(dec.Current), dec.Desired, url)
				}
			}
		}),
	)
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { load(runCtx, clock, reg.Window(metrics.ScopeRoute, "checkout"), start, d) })
	err = loop.Run(runCtx) // closes the loop, waiting for its webhook calls, when runCtx ends
	wg.Wait()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() != nil {
		p.printf("interrupted\n")
		return nil
	}

	// The loop has stopped; let the receiver finish a request it may still hold.
	for deadline := time.Now().Add(5 * time.Second); tp.inFlight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	n, applied := plat.state(target)
	p.printf("platform: %s runs %d replicas after %d scale requests\n", target, n, applied)
	if err := demonstrate(p, url, secret, tp.captured()); err != nil {
		return err
	}
	if n2, applied2 := plat.state(target); n2 != n || applied2 != applied {
		return fmt.Errorf("webhook example: the checks changed the platform: %d replicas after %d requests", n2, applied2)
	}
	return nil
}

// scalerMux routes the scaler's one endpoint, POST /scale, to h.
func scalerMux(h http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("POST /scale", h)
	return mux
}

// scalerServer is the scaler's HTTP server: webhook.NewServer's timeouts
// (headers within 5 s, the whole request within 10 s, ...), so that no
// client can hold a connection by sending slowly. A plain http.Server has no
// timeout at all.
func scalerServer(h http.Handler) *http.Server {
	return webhook.NewServer("", h)
}

func from(current int) string {
	if current < 0 {
		return "?"
	}
	return strconv.Itoa(current)
}

// load records the load step into w until ctx ends: baseRate requests per
// second, peakRate from a fifth to half of d, each taking 20 ms.
func load(ctx context.Context, clock metrics.Clock, w *metrics.Window, start time.Time, d time.Duration) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last, owed := start, 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := clock.Now()
		rate := baseRate
		if el := now.Sub(start); el >= d/5 && el < d/2 {
			rate = peakRate
		}
		// Record what is due since the last tick, so a late tick loses nothing.
		owed += rate * now.Sub(last).Seconds()
		last = now
		for ; owed >= 1; owed-- {
			w.RecordAt(now, metrics.Observation{Latency: 20 * time.Millisecond})
		}
	}
}

// demonstrate shows the signature scheme on the first request the receiver
// got: the HMAC recomputed by hand, then the receiver's answers to a replay,
// a tampered body, a wrong secret and a stale timestamp.
func demonstrate(p *printer, url string, secret []byte, c *captured) error {
	if c == nil {
		return errors.New("webhook example: the receiver got no request to check")
	}
	sig, err := webhook.ParseSignature(c.signature)
	if err != nil {
		return err
	}
	p.printf("\nsignature of decision %s:\n  %s: %s\n", c.key, webhook.SignatureHeader, c.signature)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%d.%s", sig.Timestamp, c.body)
	byHand := m.Sum(nil)
	p.printf("  HMAC-SHA256(secret, \"%d.\" + body) = %s…, matches v1: %v\n",
		sig.Timestamp, hex.EncodeToString(byHand)[:16], hmac.Equal(byHand, sig.V1[0]))
	p.printf("  webhook.VerifySignature: %v\n", webhook.VerifySignature(secret, c.signature, c.body, time.Now(), webhook.DefaultTolerance))

	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	tampered := bytes.Replace(c.body, []byte(`"replicas":`), []byte(`"replicas":9`), 1)
	checks := []struct {
		what, signature string
		body            []byte
	}{
		{"replay of the same request", c.signature, c.body},
		{"body changed, signature kept", c.signature, tampered},
		{"signed with another secret", webhook.Sign([]byte("not the shared secret"), c.body, time.Now()), c.body},
		{"signed ten minutes ago", webhook.Sign(secret, c.body, time.Now().Add(-10*time.Minute)), c.body},
	}
	for _, ch := range checks {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(ch.body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.SignatureHeader, ch.signature)
		req.Header.Set(webhook.IdempotencyKeyHeader, c.key)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("webhook example: %s: %w", ch.what, err)
		}
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		_ = resp.Body.Close()
		extra := ""
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			extra = ", Idempotent-Replayed: true (not applied again)"
		}
		p.printf("%-30s → %d %s%s\n", ch.what, resp.StatusCode, strings.TrimSpace(string(text)), extra)
	}
	return nil
}
