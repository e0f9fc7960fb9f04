// Command cluster runs three gateway replicas that share one Redis: a tenant limit of
// 300 requests per second held cluster-wide (middleware/redislimit), the windows of all
// three merged for the leader's scaling loop (metrics/redisshare), and the leader chosen
// by a Redis lock whose fencing token guards its actuations (actuator/redisstate).
//
//	go run ./examples/cluster
//
// It starts a redis-server from PATH on a free port in a temporary folder (or uses
// -redis host:port), sends the replicas 64 clients' worth of traffic spread 80/15/5 %,
// and prints every second each replica's offered and admitted rates, the cluster's
// admitted rate against the limit, and what the leader sees and decides on the merged
// windows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator/redisstate"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/metrics/redisshare"
	"github.com/autoscalelua/autoscalelua/middleware"
	"github.com/autoscalelua/autoscalelua/middleware/redislimit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// replica is one gateway.
type replica struct {
	name              string
	reg               *metrics.Registry
	lim               *redislimit.Limiter
	pub               *redisshare.Publisher
	elector           *redisstate.Elector
	loop              *autoscale.Loop
	url               string
	offered, admitted atomic.Int64
	lastOff, lastAdm  int64
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	addr := fs.String("redis", "", "Redis address; empty starts a redis-server from PATH")
	rps := fs.Float64("rate", 300, "tenant acme's cluster-wide limit, requests per second")
	clients := fs.Int("clients", 64, "concurrent clients")
	every := fs.Duration("interval", time.Second, "how often to print the rates")
	dur := fs.Duration("duration", 0, "how long to run; 0 until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	if *addr == "" {
		a, stopRedis, err := startRedis()
		if err != nil {
			return err
		}
		defer stopRedis()
		*addr = a
	}
	client := redis.NewClient(&redis.Options{Addr: *addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second, ContextTimeoutEnabled: true})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", *addr, err)
	}
	client.FlushDB(ctx)
	fmt.Fprintf(out, "redis at %s; tenant acme limited to %.0f req/s across 3 replicas\n", *addr, *rps)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spans := []time.Duration{0, 5 * time.Second}
	reps := make([]*replica, 3)
	stopServers := make(chan struct{})
	for i := range reps {
		r, err := newReplica(ctx, &wg, stopServers, client, fmt.Sprint("gw-", i), *rps, spans)
		if err != nil {
			return err
		}
		reps[i] = r
	}
	// The clients stop first and close their connections; then the servers shut down.
	var drivers sync.WaitGroup
	defer func() { cancel(); drivers.Wait(); close(stopServers) }()
	for range *clients {
		drivers.Go(func() { drive(ctx, reps) })
	}
	start := time.Now()
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			report(out, reps, *every, *rps, time.Since(start))
		}
	}
}

func newReplica(ctx context.Context, wg *sync.WaitGroup, stopServer <-chan struct{}, client *redis.Client, name string, rps float64, spans []time.Duration) (*replica, error) {
	r := &replica{name: name}
	var err error
	if r.reg, err = metrics.NewRegistry(); err != nil {
		return nil, err
	}
	if r.lim, err = redislimit.New(client, redislimit.Config{Replica: name, Replicas: 3}); err != nil {
		return nil, err
	}
	if err := r.lim.SetLimit("acme", redislimit.Limit{Rate: rps, Burst: int(rps)}); err != nil {
		return nil, err
	}
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithTenantLimiter(r.lim))
	if err != nil {
		return nil, err
	}
	shareCfg := redisshare.Config{Replica: name, Spans: spans}
	if r.pub, err = redisshare.NewPublisher(client, r.reg, shareCfg); err != nil {
		return nil, err
	}
	merger, err := redisshare.NewMerger(client, r.reg, shareCfg)
	if err != nil {
		return nil, err
	}
	if r.elector, err = redisstate.NewElector(client, redisstate.ElectorConfig{
		Key: "cluster:leader", Identity: name,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
	}); err != nil {
		return nil, err
	}
	act, err := redisstate.NewActuator(client, redisstate.ActuatorConfig{}, redisstate.WithFence(r.elector))
	if err != nil {
		return nil, err
	}
	policy, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source: autoscale.Source{Scope: metrics.ScopeTenant, Key: "acme", Signal: autoscale.SignalRate},
		Span:   5 * time.Second, TargetValue: 100, // one backend replica per 100 req/s offered
	})
	if err != nil {
		return nil, err
	}
	if r.loop, err = autoscale.NewLoop(autoscale.WithPolicy(policy), autoscale.WithReader(merger.Reader),
		autoscale.WithElector(r.elector), autoscale.WithDefaultActuator(act),
		autoscale.WithTargets(autoscale.Target{Name: "backend", Min: 1, Max: 50})); err != nil {
		return nil, err
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "ok\n") })
	h, err := middleware.Wrap(ok, middleware.WithRegistry(r.reg), middleware.WithAdmission(adm),
		middleware.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.url = "http://" + ln.Addr().String() + "/api"
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() { srv.Serve(ln) })
	wg.Go(func() {
		<-stopServer
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	wg.Go(func() { r.lim.Run(ctx) })
	wg.Go(func() { r.pub.Run(ctx) })
	wg.Go(func() { r.elector.Run(ctx) })
	wg.Go(func() { r.loop.Run(ctx); r.loop.Close() })
	return r, nil
}

// drive sends requests of tenant acme, each to a replica chosen 80/15/5 %.
func drive(ctx context.Context, reps []*replica) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for ctx.Err() == nil {
		x := rand.Float64()
		r := reps[2]
		switch {
		case x < 0.80:
			r = reps[0]
		case x < 0.95:
			r = reps[1]
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", r.url, nil)
		req.Header.Set(middleware.TenantHeader, "acme")
		resp, err := c.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.offered.Add(1)
		if resp.StatusCode == http.StatusOK {
			r.admitted.Add(1)
		}
		time.Sleep(time.Millisecond) // a client's think time
	}
}

func report(out io.Writer, reps []*replica, every time.Duration, limit float64, since time.Duration) {
	secs := every.Seconds()
	var total, all float64
	for _, r := range reps {
		off, adm := r.offered.Load(), r.admitted.Load()
		st := r.lim.Stats()
		role := "follower"
		if r.elector.IsLeader() {
			role = "leader"
		}
		fmt.Fprintf(out, "%s %-8s offered %7.1f req/s  admitted %6.1f req/s  fallback=%v\n",
			r.name, role, float64(off-r.lastOff)/secs, float64(adm-r.lastAdm)/secs, st.Fallback)
		total += float64(adm-r.lastAdm) / secs
		all += float64(adm)
		r.lastOff, r.lastAdm = off, adm
	}
	fmt.Fprintf(out, "cluster  admitted %6.1f req/s, %6.1f req/s since the start (limit %.0f, plus the burst)\n",
		total, all/since.Seconds(), limit)
	for _, r := range reps {
		ds := r.loop.Decisions()
		if !r.elector.IsLeader() || len(ds) == 0 {
			continue
		}
		d := ds[len(ds)-1]
		var rate float64
		for _, in := range d.Inputs {
			if in.Key == "acme" {
				rate = in.Snapshot.Rate
			}
		}
		fmt.Fprintf(out, "leader %s sees acme at %.1f req/s offered, merged from %v: backend %d -> %d (%s)\n",
			r.name, rate, d.Sources, d.Current, d.Desired, d.Why)
	}
}

// startRedis starts a redis-server from PATH on a free loopback port, its files in a
// temporary folder; stop kills it and removes the folder.
func startRedis() (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("no redis-server on PATH: install one (apt-get install -y redis-server) or pass -redis host:port")
	}
	dir, err := os.MkdirTemp("", "autoscalelua-cluster-")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	addr = "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if c.Ping(context.Background()).Err() == nil {
			return addr, stop, nil
		}
		if time.Since(start) > 10*time.Second {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer", addr)
		}
	}
}
