// Command queue runs a gateway's scaling loop and a dedicated scaling
// controller that talk only through a message broker: an in-process NATS
// server with JetStream, storing in a temporary directory removed at exit.
//
// The gateway's loop publishes each decision as a CloudEvent
// (actuator/queue.NewActuator over actuator/queue/nats.Publisher); the
// controller subscribes with a durable JetStream consumer
// (actuator/queue/nats.Subscriber) and a queue.Consumer, which applies each
// event to a tiny in-memory platform that prints one line per scale event.
//
// The gateway records a load step in a metrics window: 20 requests per second,
// then 120 from a fifth to half of the run, then 20 again; the loop holds 20
// requests per second per replica (the Kubernetes HPA's algorithm), so it
// scales up to about 6 replicas and back down. After the run the program shows what makes
// at-least-once delivery safe: a decision published twice is stored once, a
// redelivered copy is skipped as a duplicate, an older decision arriving late
// is skipped as stale, and a message that is not an event is skipped as
// poison; none of them changes the platform.
//
//	go run ./examples/queue               # runs for 4 s
//	go run ./examples/queue -duration 10s # or until Ctrl-C
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	natsq "github.com/autoscalelua/autoscalelua/actuator/queue/nats"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	duration := flag.Duration("duration", 4*time.Second, "how long the load runs before the program shows the delivery checks and exits")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: queue [flags]\n\nA gateway loop and a scaling controller talking through NATS JetStream.\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *duration <= 0 {
		fmt.Fprintln(os.Stderr, "queue: -duration must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *duration); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// The broker's names, the load step and the policy's goal.
const (
	stream  = "DECISIONS"
	subject = "autoscale.decisions"
	source  = "/gateway/example"

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

// platform is what the controller scales: it "runs" replicas by keeping
// their count. A real controller would use actuator/kubernetes.
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
	p.mu.Lock()
	defer p.mu.Unlock()
	from, ok := p.replicas[req.Target]
	if !ok {
		from = 1
	}
	p.replicas[req.Target] = req.Replicas
	p.applied++
	p.out.printf("controller: %s %d → %d replicas (event %s: %s)\n", req.Target, from, req.Replicas, req.DecisionID, req.Reason)
	return nil
}

func (p *platform) state(t actuator.Target) (replicas, applied int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replicas[t], p.applied
}

var _ actuator.Actuator = (*platform)(nil)

// run starts the broker, the controller and the gateway's loop, runs the
// load for d (or until ctx ends), shows the delivery checks, and shuts
// everything down, removing the broker's store.
func run(ctx context.Context, out io.Writer, d time.Duration) (err error) {
	p := &printer{w: out}
	target := actuator.Target{Name: "checkout", Namespace: "shop"}

	// The broker: NATS with JetStream on a loopback port, stored in a temp dir.
	dir, err := os.MkdirTemp("", "autoscalelua-queue-example-")
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("queue example: remove the store: %w", rerr)
		}
	}()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		return errors.New("queue example: the NATS server did not start")
	}
	p.printf("broker: NATS JetStream at %s, stream %s on %q\n", srv.ClientURL(), stream, subject)

	// One connection for the gateway, one for the controller, as if they ran
	// in two processes.
	gwConn, err := nats.Connect(srv.ClientURL(), nats.Name("gateway"))
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	defer gwConn.Close()
	ctlConn, err := nats.Connect(srv.ClientURL(), nats.Name("controller"))
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	defer ctlConn.Close()
	js, err := jetstream.New(gwConn)
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute, // re-published decisions are dropped for this long
	})
	if err != nil {
		return fmt.Errorf("queue example: create stream: %w", err)
	}

	// The controller: a durable subscriber feeding a Consumer and the platform.
	plat := &platform{out: p, replicas: map[actuator.Target]int{}}
	consumer, err := queue.NewConsumer(plat)
	if err != nil {
		return err
	}
	sub, err := natsq.NewSubscriber(ctlConn, stream, "scaler", consumer, natsq.WithFetchWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	subCtx, stopSub := context.WithCancel(context.Background())
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Run(subCtx) }()
	defer func() { stopSub(); <-subDone }()

	// The gateway: a metrics window, a scaling loop, and the queue actuator.
	pubNATS, err := natsq.NewPublisher(gwConn, subject)
	if err != nil {
		return err
	}
	clock := metrics.NewSystemClock()
	reg, err := metrics.NewRegistry(metrics.WithClock(clock),
		metrics.WithWindow(metrics.WindowConfig{Width: 100 * time.Millisecond, Buckets: 100}))
	if err != nil {
		return err
	}
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
		autoscale.WithActuation(autoscale.Actuation{Timeout: 3 * time.Second}),
		autoscale.WithTargets(autoscale.Target{
			Name: "checkout", Ref: target, Min: 1, Max: 10, Actuator: queue.NewActuator(pubNATS, source),
			// Up at once; down after 0.5 s of lower recommendations (the HPA waits 300 s).
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{StabilizationWindow: 500 * time.Millisecond}},
		}),
		autoscale.WithObserver(func(tk autoscale.Tick) {
			for _, dec := range tk.Decisions {
				if dec.Applied {
					p.printf("gateway:    t=%4.1fs %s %s → %d replicas, publish %s\n",
						dec.Time.Sub(start).Seconds(), dec.Target, from(dec.Current), dec.Desired, dec.ID)
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
	err = loop.Run(runCtx) // closes the loop, waiting for its publishes, when runCtx ends
	wg.Wait()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() != nil {
		p.printf("interrupted\n")
		return nil
	}

	// Every decision the broker accepted is in the stream, and the loop has
	// stopped publishing: let the controller catch up with all of them.
	if err := gwConn.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	stored := info.State.Msgs
	if stored == 0 {
		return errors.New("queue example: the gateway published nothing")
	}
	if err := waitFor("the controller to apply every decision", func() bool {
		s := consumer.Stats()
		return s.Applied+s.Duplicates+s.Stale >= stored
	}); err != nil {
		return err
	}
	n, applied := plat.state(target)
	p.printf("controller: %s runs %d replicas after %d events (%d in the stream)\n", target, n, applied, stored)
	raw, err := st.GetMsg(ctx, 1)
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	first := queue.Event{ID: raw.Header.Get(jetstream.MsgIDHeader), Data: raw.Data}
	if err := demonstrate(p, js, st, pubNATS, consumer, first, start); err != nil {
		return err
	}
	if n2, applied2 := plat.state(target); n2 != n || applied2 != applied {
		return fmt.Errorf("queue example: the checks changed the platform: %d replicas after %d events", n2, applied2)
	}
	return nil
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

// demonstrate publishes what at-least-once delivery brings, and shows that
// the stream and the consumer absorb it.
func demonstrate(p *printer, js jetstream.JetStream, st jetstream.Stream, pub *natsq.Publisher, c *queue.Consumer, first queue.Event, start time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.printf("\nat-least-once delivery, with decision %s:\n", first.ID)

	before, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	if err := pub.Publish(ctx, first); err != nil {
		return err
	}
	after, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("queue example: %w", err)
	}
	p.printf("  published again (same Nats-Msg-Id): the stream holds %d messages before, %d after\n",
		before.State.Msgs, after.State.Msgs)

	req, err := queue.Decode(first.Data)
	if err != nil {
		return err
	}
	req.DecisionID, req.Time, req.Replicas, req.Reason = "late-1", start.Add(-time.Minute), 9, "a decision from a minute ago"
	stale, err := queue.Encode(req, source)
	if err != nil {
		return err
	}
	s0 := c.Stats()
	for _, m := range []struct{ what, id string }{
		{"redelivered copy (another message ID)", "copy-" + first.ID},
		{"older decision arriving late", "late-1"},
		{"not an event", "junk-1"},
	} {
		data := first.Data
		switch m.id {
		case "late-1":
			data = stale
		case "junk-1":
			data = []byte("this is not a CloudEvent")
		}
		if _, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(m.id)); err != nil {
			return fmt.Errorf("queue example: publish %s: %w", m.what, err)
		}
	}
	if err := waitFor("the controller to skip the three messages", func() bool {
		s := c.Stats()
		return s.Duplicates > s0.Duplicates && s.Stale > s0.Stale && s.Poison > s0.Poison
	}); err != nil {
		return err
	}
	s := c.Stats()
	p.printf("  redelivered copy (another message ID) → skipped as a duplicate\n")
	p.printf("  older decision arriving late          → skipped as stale\n")
	p.printf("  a message that is not an event        → skipped as poison\n")
	p.printf("consumer stats: %+v\n", s)
	return nil
}

// waitFor polls cond, an observable state, for up to 10 s.
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("queue example: timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
