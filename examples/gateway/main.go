// Command gateway is the autoscalelua demo: a gateway on localhost that proxies to
// simulated backends whose latency grows with load, runs a shipped Lua scaling policy,
// and scales the backend pool through an in-process actuator, while a built-in load
// generator plays a flash sale.
//
//	go run ./examples/gateway
//
// Within a minute the terminal shows the decisions, one line each under a header
// naming the columns (-h explains them and the policy's terms), and
// http://localhost:8080/debug/autoscale shows replicas, rates, latency and decisions
// live. Flags choose the policy (a shipped name, or a .lua file that is reloaded when
// it changes), the load profile, the tick and the address; -h lists them. To edit a
// policy while it runs:
//
//	go run ./examples/gateway -dump-policy kpa > my.lua
//	go run ./examples/gateway -policy my.lua     # then edit my.lua and save
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/dashboard"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luahttp"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

//go:embed access.lua
var accessScript string

// The demo's service: what one replica serves, and how it starts.
const (
	target      = "api" // the loop's target and the route's key
	concurrency = 4     // requests one replica serves at once
	serviceTime = 50 * time.Millisecond
	coldStart   = 2 * time.Second
	freeRPS     = 20 // the free tenant's token bucket: rate and burst
	// queuePerSlot and queueWait size the admission's priority queue (newAdmission):
	// requests waiting per slot of the concurrency limit, and the longest wait.
	queuePerSlot = 4
	queueWait    = time.Second
	// lineSpan is the span of the figures on a decision line: the demo's panic window
	// (demoTimescale), the span over which adaptive estimates its arrival rate.
	lineSpan = 3 * time.Second
)

// usageHead is what -h prints above the flags: what the demo does and how to read a
// decision line.
const usageHead = `usage: gateway [flags]

A gateway on localhost proxying to simulated backends, scaled by a Lua policy while
a built-in load generator plays traffic. It prints one line per decision:
  now→want   replicas before, and the count the policy asked for; move, decision: applied or why not
  req/s(3s)  requests that ended per second over the last 3 s (throttled ones included)
  lambda     adaptive's arrival-rate estimate: req/s plus the growth of requests in flight
  surprise   adaptive's largest recent excess of lambda over its forecast, kept as headroom
  s          adaptive's learned service time; forecast, lambda one cold start ahead

flags:
`

type config struct {
	addr        string
	policy      string
	load        string
	tick        time.Duration
	duration    time.Duration
	minReplicas int
	maxReplicas int
	verbose     bool
	soak        bool

	// Set by tests.
	profile   simulate.Profile // overrides load
	soakTimes *soakTimes       // overrides defaultSoak
	period    time.Duration
	ready     func(g *gateway) // called once the gateway serves
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errDumped) {
		return
	}
	if err == nil {
		err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

var errDumped = errors.New("policy dumped")

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		io.WriteString(out, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.addr, "addr", "localhost:8080", "address to listen on")
	fs.StringVar(&c.policy, "policy", "adaptive", "scaling policy: a shipped name ("+strings.Join(simulate.ShippedLuaNames(), ", ")+") or a .lua file, reloaded when it changes")
	fs.StringVar(&c.load, "load", "flash-sale", "built-in load: "+profileNames())
	fs.DurationVar(&c.tick, "tick", time.Second, "the scaling loop's period (at least 50ms)")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.IntVar(&c.minReplicas, "min", 1, "fewest backend replicas")
	fs.IntVar(&c.maxReplicas, "max", 20, "most backend replicas")
	fs.BoolVar(&c.verbose, "v", false, "log the library's messages too")
	fs.BoolVar(&c.soak, "soak", false, "soak test: inject a fault every 30 s (a backend killed, one slowed 10×, the actuator failing for 20 s, "+
		"a broken policy reload), print heap and goroutines each minute, and fail unless they stay flat, every request is accounted for "+
		"and nothing panics (scripts/soak.sh)")
	dump := fs.String("dump-policy", "", "print a shipped policy's source and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *dump != "" {
		src, err := autoscale.PolicySource(*dump)
		if err != nil {
			return c, err
		}
		io.WriteString(out, src)
		return c, errDumped
	}
	if _, ok := profiles[c.load]; !ok {
		return c, fmt.Errorf("unknown load %q; choose from %s", c.load, profileNames())
	}
	if c.load == "cold-start" {
		c.minReplicas = 0 // the profile shows a start from zero
	}
	return c, nil
}

// gateway is everything the demo runs.
type gateway struct {
	reg       *metrics.Registry
	pool      *balancer.Pool
	fleet     *fleet
	admission *middleware.Admission
	activator *middleware.Activator // with -min 0: holds requests while a replica starts
	policy    *luabind.Runtime
	access    *luabind.Runtime
	loop      *autoscale.Loop
	dash      *dashboard.Dashboard
	load      *loadgen
	url       string
	soak      *soak // with -soak
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	logLevel := slog.LevelError
	if cfg.verbose {
		logLevel = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: logLevel}))

	g := &gateway{}
	var err error
	if g.reg, err = metrics.NewRegistry(); err != nil {
		return err
	}
	if g.pool, err = balancer.New(balancer.WithRegistry(g.reg), balancer.WithAlgorithm(&balancer.PeakEWMA{})); err != nil {
		return err
	}
	g.fleet = &fleet{pool: g.pool, concurrency: concurrency, serviceTime: serviceTime, coldStart: coldStart}
	defer g.fleet.Close()
	if err := g.fleet.warm(cfg.minReplicas); err != nil {
		return err
	}

	// The policy: a shipped one, or a file that is watched and reloaded.
	env := simulate.Env{Target: target, Route: target, Concurrency: concurrency, ServiceTime: serviceTime,
		ColdStart: coldStart, SLO: 4 * serviceTime, Min: cfg.minReplicas, Max: cfg.maxReplicas}
	src, luaCfg, safety, err := policySource(cfg.policy, env)
	if cfg.minReplicas == 0 {
		// Any policy scales to zero through the safety layer after 15 s without
		// requests (the route window "api"), not within 10 s of a wake.
		safety.ScaleToZero = &autoscale.ScaleToZero{After: 15 * time.Second, Cooldown: 10 * time.Second}
	}
	watchPath := ""
	if strings.HasSuffix(cfg.policy, ".lua") {
		watchPath = cfg.policy
	}
	if err != nil {
		return err
	}
	if g.policy, err = luabind.New(src, luabind.WithConfig(luaCfg), luabind.WithLogger(logger), luabind.WithRegistry(g.reg)); err != nil {
		return err
	}
	defer g.policy.Close()
	if g.access, err = luabind.New(luabind.FromString("access.lua", accessScript), luabind.WithLogger(logger)); err != nil {
		return err
	}
	defer g.access.Close()

	if g.admission, err = newAdmission(cfg.maxReplicas, g.reg); err != nil {
		return err
	}
	var act actuator.Actuator = g.fleet
	if cfg.soak {
		g.soak = &soak{g: g, out: out, times: defaultSoak}
		if cfg.soakTimes != nil {
			g.soak.times = *cfg.soakTimes
		}
		act = failingActuator{fleet: g.fleet, s: g.soak}
	}
	if g.loop, err = autoscale.NewLoop(
		autoscale.WithPolicy(g.policy),
		autoscale.WithRegistry(g.reg),
		autoscale.WithTick(cfg.tick),
		autoscale.WithTargets(autoscale.Target{Name: target, Min: cfg.minReplicas, Max: cfg.maxReplicas, Actuator: act, Safety: safety, ColdStart: coldStart}),
		autoscale.WithPool("backends", g.pool),
		autoscale.WithShedder(g.admission),
		autoscale.WithThrottler(g.admission),
		autoscale.WithRouter(g.admission),
		autoscale.WithLogger(logger),
		autoscale.WithObserver(func(tk autoscale.Tick) { printTick(out, g, tk) }),
	); err != nil {
		return err
	}

	proxy, err := balancer.NewProxy(g.pool)
	if err != nil {
		return err
	}
	defer proxy.CloseIdleConnections()
	var backend http.Handler = proxy
	if cfg.minReplicas == 0 {
		// From zero, requests wait in the activator's hold queue for a replica, and the
		// first one held wakes the loop at once.
		g.activator, err = middleware.NewActivator(g.loop, map[string]middleware.HoldConfig{target: {
			Concurrency: concurrency, MaxQueue: 256, MaxWait: 10 * time.Second, ColdStart: coldStart,
		}})
		if err != nil {
			return err
		}
		g.fleet.onReady = func(ready int) { g.activator.SetReady(target, ready) }
		if backend, err = g.activator.Handler(target, proxy); err != nil {
			return err
		}
	}
	front, err := frontend(g.reg, g.admission, g.access, logger, backend)
	if err != nil {
		return err
	}

	if g.dash, err = dashboard.New(dashboard.WithLoop(g.loop), dashboard.WithRegistry(g.reg), dashboard.WithTitle("autoscalelua demo gateway"),
		dashboard.WithCounters(func() map[string]uint64 {
			st := g.admission.Stats()
			return map[string]uint64{"shed": st.Shed + st.QueueFull + st.QueueTimeout, "throttled": st.Throttled}
		})); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/debug/autoscale/", http.StripPrefix("/debug/autoscale", g.dash))
	mux.Handle("/", front)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if g.soak != nil {
		srv.ErrorLog = log.New(g.soak.panicWatch(), "", log.LstdFlags)
	}
	g.url = "http://" + ln.Addr().String()

	profile, period := profiles[cfg.load].profile, profiles[cfg.load].period
	if cfg.profile != nil {
		profile, period = cfg.profile, cfg.period
	}
	if g.soak != nil {
		g.soak.period = period
	}
	g.load = &loadgen{client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}},
		url: g.url + "/api/items", profile: profile, period: period, max: 2048}
	defer g.load.client.CloseIdleConnections()

	fmt.Fprintf(out, "gateway on %s  dashboard %s/debug/autoscale/\n", g.url, g.url)
	fmt.Fprintf(out, "policy %s, load %s, tick %v, replicas %d..%d (%d concurrent × %v each, cold start %v)\n",
		src.Name, cfg.load, cfg.tick, cfg.minReplicas, cfg.maxReplicas, concurrency, serviceTime, coldStart)
	fmt.Fprintf(out, "tenants %s; free is throttled to %d rps (burst %d): what it sends beyond that is answered 429 and counted as throttled\n",
		tenantShares(), freeRPS, freeRPS)
	fmt.Fprintln(out, lineHeader)

	// Every goroutine below ends when ctx does; wg waits for them.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	wg.Go(func() { g.loop.Run(ctx) })
	wg.Go(func() { g.dash.Run(ctx) })
	loadDone := make(chan struct{})
	wg.Go(func() {
		g.load.run(ctx)
		close(loadDone)
	})
	if g.soak != nil {
		wg.Go(func() { g.soak.run(ctx) })
	}
	if watchPath != "" {
		w, err := luabind.NewWatcher(g.policy, watchPath)
		if err != nil {
			return err
		}
		w.OnReload = func(err error) {
			if err != nil {
				fmt.Fprintf(out, "policy reload failed, the old policy keeps running: %v\n", err)
				return
			}
			fmt.Fprintf(out, "policy reloaded from %s\n", watchPath)
		}
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				errs <- err
			}
		})
	}
	if cfg.ready != nil {
		cfg.ready(g)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		stop() // the server or the watcher failed: end the rest
	}
	// The load's last requests, sent as ctx ended, are served before the server closes:
	// closing it first would fail them before they reach the gateway, and the counts
	// of what was sent and what was admitted would disagree.
	<-loadDone
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	wg.Wait()
	c := g.load.counts()
	fmt.Fprintf(out, "sent %d: served %d, shed %d, throttled %d (free over %d rps), errored %d\n",
		c.Sent, c.Served, c.Shed, c.Throttled, freeRPS, c.Errored)
	if g.activator != nil {
		st, _ := g.activator.Stats(target)
		cs, _ := g.loop.ColdStart(target)
		fmt.Fprintf(out, "held for a cold start %d: released %d, queue full %d, timed out %d; observed cold start %v\n",
			st.Held, st.Forwarded, st.Full, st.TimedOut, cs.Round(time.Millisecond))
	}
	if g.soak != nil {
		runErr = errors.Join(runErr, g.soak.verdict(c))
	}
	return runErr
}

// newAdmission is the gateway's admission control: the free tenant's token bucket, and
// a concurrency limit at what the fleet serves at its largest (maxReplicas ×
// concurrency) with a priority queue behind it. When the fleet is at its largest and
// full, requests wait up to queueWait at the gateway instead of piling onto the
// backends, and access.lua's priorities decide who goes first: paying tenants
// (priority 0) before the free tier (-1). Below that, the scaling loop adds replicas
// and the limit does not bind.
//
// The free tier is also held by an adaptive concurrency limit (Vegas): it may fill a
// quarter of a limit that grows while the backends' latency stays at its no-load
// level and shrinks as they queue, so a slowing fleet sheds free requests (503,
// X-Autoscale-Rejected: limit) before paying ones wait. The limit never falls below
// the static limit and its queue, so paying tenants see only those; the limit and its
// rejections are windows (scope "limit", key "api|-1") the dashboard and Lua read.
func newAdmission(maxReplicas int, reg *metrics.Registry) (*middleware.Admission, error) {
	limit := maxReplicas * concurrency
	floor := limit + queuePerSlot*limit
	// The free tier's throttle is set once and must hold for the gateway's life, so
	// rules do not expire (the default RuleTTL would lift it after 10 minutes unless
	// re-issued, as a policy's actions are every tick).
	opts := []middleware.AdmissionOption{middleware.WithAdaptiveLimit(middleware.AdaptiveConfig{
		InitialLimit: floor, MinLimit: floor, MaxLimit: 4 * floor,
		Classes: []middleware.Class{{Priority: -1, Ceiling: 0.25}, {Priority: 0, Ceiling: 1}},
	})}
	if reg != nil {
		opts = append(opts, middleware.WithAdmissionRegistry(reg))
	}
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{
		MaxConcurrency: limit, QueueSize: queuePerSlot * limit, MaxWait: queueWait, RuleTTL: -1,
	}, opts...)
	if err != nil {
		return nil, err
	}
	if err := adm.Throttle("free", freeRPS, freeRPS); err != nil {
		return nil, err
	}
	return adm, nil
}

// frontend is the gateway's request path: classify (route "api", tenant from
// X-Tenant-ID), run access.lua's on_request, admit, record, and proxy.
func frontend(reg *metrics.Registry, adm *middleware.Admission, access *luabind.Runtime, logger *slog.Logger, proxy http.Handler) (http.Handler, error) {
	tenantHeader := http.CanonicalHeaderKey(middleware.TenantHeader)
	return middleware.Wrap(proxy,
		middleware.WithRegistry(reg),
		middleware.WithLogger(logger),
		middleware.WithClassifier(func(r *http.Request) middleware.Keys {
			k := middleware.Keys{Route: target}
			if v := r.Header[tenantHeader]; len(v) > 0 {
				k.Tenant = v[0]
			}
			return k
		}),
		middleware.WithHook(luahttp.Hook(access)),
		middleware.WithAdmission(adm),
	)
}

// demoTimescale compresses the shipped policies' time constants, so the demo shows a
// whole cycle, up and back down, within a couple of minutes. Production settings are the
// policies' defaults (see each file's header).
var demoTimescale = map[string]map[string]any{
	"kpa": {"stable_window": 20, "panic_window": 2, "scale_to_zero_grace": -1},
	"adaptive": {"down_delay": 15, "down_window": 18, "down_step_interval": 3, "burst_memory": 60,
		"idle_to_zero": 10, "panic_window": 3},
}

// policySource returns the policy's script, its config table and the safety layer to
// run it with.
func policySource(name string, env simulate.Env) (luabind.Source, map[string]any, autoscale.Safety, error) {
	if strings.HasSuffix(name, ".lua") {
		src, err := luabind.FromFile(name)
		return src, env.LuaConfig(), autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}, err
	}
	p, err := simulate.Shipped(name)
	if err != nil || p.Config == nil {
		return luabind.Source{}, nil, autoscale.Safety{}, fmt.Errorf("policy %q is neither a .lua file nor one of %s", name, strings.Join(simulate.ShippedLuaNames(), ", "))
	}
	code, err := autoscale.PolicySource(name)
	if err != nil {
		return luabind.Source{}, nil, autoscale.Safety{}, err
	}
	src := luabind.FromString(name+".lua", code)
	cfg := p.Config(env)
	for k, v := range demoTimescale[name] {
		cfg[k] = v
	}
	return src, cfg, p.Safety, nil
}

// lineHeader names the columns of printTick's lines.
const lineHeader = "time     target  now→want move decision  req/s(3s) in-flight p99(3s)  ready  policy's reason"

// printTick prints one line per decision, under lineHeader.
func printTick(out io.Writer, g *gateway, tk autoscale.Tick) {
	s, _ := g.reg.Lookup(metrics.ScopeRoute, target)
	var snap metrics.Snapshot
	if s != nil {
		snap = s.SnapshotAt(tk.Time, lineSpan)
	}
	for _, d := range tk.Decisions {
		line := fmt.Sprintf("%s %-6s %3d → %-3d %-4s %-9s %9.0f %9d %7.1fms %5d ",
			tk.Time.Format("15:04:05"), d.Target, max(d.Current, 0), d.Desired, d.Direction, d.Why,
			snap.Rate, snap.InFlight, float64(snap.P99)/float64(time.Millisecond), g.fleet.Ready())
		if d.Policy.Reason != "" {
			line += " " + d.Policy.Reason
		}
		if d.Policy.Err != "" {
			line += "  policy error: " + d.Policy.Err
		}
		for _, st := range d.Steps {
			if st.Clamped() {
				line += fmt.Sprintf("  [%s %d→%d]", st.Name, st.Before, st.After)
			}
		}
		fmt.Fprintln(out, line)
	}
	for _, a := range tk.Actions {
		fmt.Fprintf(out, "%s action %s %s %s\n", tk.Time.Format("15:04:05"), a.Action.Kind(), a.Why, a.Err)
	}
}
