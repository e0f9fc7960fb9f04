// Command llmgateway is the autoscalelua AI-gateway demo: an OpenAI-compatible gateway
// on localhost in front of simulated model servers, routing by model with fallback
// chains, scaling each model with the shipped llm_cost policy (and to zero when idle),
// while a built-in load generator plays tenants of different priorities and prompt
// lengths.
//
//	go run ./examples/llmgateway
//
// Three models run in-process as real HTTP servers: llama-70b (slow, expensive,
// scaled 0..4, to zero after -idle), llama-8b (fast and cheap, 1..6) and hosted (a
// hosted provider: one fixed replica, priced per token, rate-limited). Each replica
// has a prefill and a decode speed in tokens per second, a batch of sequences it runs
// at once, a queue, a KV cache that fills with the tokens in flight, a cold start, and
// answers /v1/chat/completions streamed (SSE) or not, with usage.
//
// Each tenant has a token budget (demoBudgets): acme and globex a generous one, the
// batch job batchco a tight one and a tighter one still on llama-70b, so batchco runs
// past its budget and gets 429s with x-ratelimit-remaining-tokens, as OpenAI answers.
//
// The terminal shows one line per decision of the loop (scale, with the model's
// replicas ready, sequences running, requests queued in the servers and KV cache in
// use; and route), each with the policy's reason; http://localhost:8080/debug/autoscale/ shows per-model replicas, tokens/s,
// p99 time to first token, rejections (token budgets' and the admission's) and cost
// per minute, and the budget rejections among its counters. Point any OpenAI client at
// http://localhost:8080/v1. -h lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/dashboard"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luahttp"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
	"github.com/autoscalelua/autoscalelua/middleware/llm"
)

// priorityHeader carries a request's priority class (higher is more important).
const priorityHeader = "X-Priority"

// lane is the suffix of a model's economy lane (llm_cost's default).
const lane = ":economy"

// demoModels are the simulated models, on the demo's compressed timescale.
func demoModels() []*modelSpec {
	return []*modelSpec{
		{name: "llama-70b", prefillTPS: 6000, decodeTPS: 40, batch: 8, queue: 8, kvTokens: 12000, coldStart: 4 * time.Second,
			inputPrice: 0.88e-6, outputPrice: 0.88e-6, cheaper: "llama-8b", fallback: []string{"llama-8b", "hosted"}, min: 0, max: 4},
		{name: "llama-8b", prefillTPS: 30000, decodeTPS: 150, batch: 16, queue: 16, kvTokens: 24000, coldStart: 2 * time.Second,
			inputPrice: 0.18e-6, outputPrice: 0.18e-6, fallback: []string{"hosted"}, min: 1, max: 6},
		{name: "hosted", prefillTPS: 50000, decodeTPS: 90, batch: 24, queue: 4, kvTokens: 64000,
			inputPrice: 2.5e-6, outputPrice: 10e-6, min: 1, max: 1},
	}
}

// budget is a token budget of the demo: tenant's, or with a model its (tenant,
// model) one.
type budget struct {
	tenant, model string
	llm.Budget
}

// demoBudgets are the tenants' token budgets: every tenant without one of its own
// (acme, globex) gets 1M tokens a minute, more than the load ever asks; batchco, the
// batch job (a fifth of the requests), gets 60k a minute, a burst of 20k and, of those,
// 30k a minute on llama-70b: it runs past both.
func demoBudgets() []budget {
	return []budget{
		{llm.AnyTenant, "", llm.Budget{TokensPerMinute: 1_000_000}},
		{"batchco", "", llm.Budget{TokensPerMinute: 60_000, Burst: 20_000}},
		{"batchco", "llama-70b", llm.Budget{TokensPerMinute: 30_000, Burst: 10_000}},
	}
}

// demoPhases is the load's cycle: a steady start, a surge that takes llama-70b to its
// max, a quiet stretch in which only llama-8b is asked (llama-70b goes to zero), and
// llama-70b's return (a cold wake).
func demoPhases(scale float64) []phase {
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	return []phase{
		{"steady", s(30 * time.Second), map[string]float64{"llama-70b": 6, "llama-8b": 10, "hosted": 1}},
		{"surge", s(40 * time.Second), map[string]float64{"llama-70b": 30, "llama-8b": 20, "hosted": 2}},
		{"quiet", s(40 * time.Second), map[string]float64{"llama-8b": 6}},
		{"return", s(30 * time.Second), map[string]float64{"llama-70b": 6, "llama-8b": 10, "hosted": 1}},
	}
}

type config struct {
	addr     string
	tick     time.Duration
	duration time.Duration
	idle     time.Duration
	scale    float64
	noLoad   bool
	verbose  bool

	// Set by tests.
	phases    []phase
	span      time.Duration // llm_cost's span; zero means 10 s
	coldScale float64       // multiplies cold starts; zero means 1
	speed     float64       // multiplies the models' tokens per second; zero means 1
	ready     func(g *gateway)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmgateway:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("llmgateway", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.addr, "addr", "localhost:8080", "address to listen on")
	fs.DurationVar(&c.tick, "tick", time.Second, "the scaling loop's period (at least 50ms)")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	fs.DurationVar(&c.idle, "idle", 20*time.Second, "idle time after which a model scales to zero (the seed's \"GPU idle for 5 minutes\", compressed)")
	fs.Float64Var(&c.scale, "cycle", 1, "stretch the load's cycle (steady 30s, surge 40s, quiet 40s, return 30s) by this factor")
	fs.BoolVar(&c.noLoad, "no-load", false, "run no built-in load: only your own clients")
	fs.BoolVar(&c.verbose, "v", false, "log the library's messages too")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: llmgateway [flags]\n\nThe tenants' token budgets (429 with x-ratelimit-remaining-tokens past them):\n")
		for _, b := range demoBudgets() {
			fmt.Fprintf(fs.Output(), "  %s\n", b)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.tick < 50*time.Millisecond || c.idle < 0 || !(c.scale > 0) {
		return c, fmt.Errorf("bad flags: tick %v (at least 50ms), idle %v (not negative), cycle %v (above 0)", c.tick, c.idle, c.scale)
	}
	return c, nil
}

// gateway is everything the demo runs.
type gateway struct {
	reg    *metrics.Registry
	pool   *balancer.Pool
	proxy  *balancer.Proxy
	fleet  *fleet
	hold   *holder
	policy *luabind.Runtime
	access *luabind.Runtime
	adm    *middleware.Admission
	llm    *llm.Gateway
	loop   *autoscale.Loop
	dash   *dashboard.Dashboard
	load   *loadgen
	specs  []*modelSpec
	url    string
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	level := slog.LevelError
	if cfg.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))

	g := &gateway{specs: demoModels()}
	for _, s := range g.specs {
		if cfg.coldScale > 0 {
			s.coldStart = time.Duration(float64(s.coldStart) * cfg.coldScale)
		}
		if cfg.speed > 0 {
			s.prefillTPS *= cfg.speed
			s.decodeTPS *= cfg.speed
		}
	}
	var err error
	if g.reg, err = metrics.NewRegistry(); err != nil {
		return err
	}
	// Cool-downs may take a model's only replica out: with one or two replicas a
	// model, the default 10% would allow none past the first.
	if g.pool, err = balancer.New(balancer.WithRegistry(g.reg), balancer.WithWindowConcurrency(),
		balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 50})); err != nil {
		return err
	}
	g.fleet = newFleet(g.pool, g.specs, lane)
	defer g.fleet.Close()
	for _, s := range g.specs {
		if err := g.fleet.warm(s.name, max(s.min, 1)); err != nil {
			return err
		}
	}

	src, err := luabind.FromFS(autoscale.Policies(), "policies/llm_cost.lua")
	if err != nil {
		return err
	}
	luaCfg := policyConfig(g.specs, cfg)
	if g.policy, err = luabind.New(src, luabind.WithConfig(luaCfg), luabind.WithLogger(logger), luabind.WithRegistry(g.reg)); err != nil {
		return err
	}
	defer g.policy.Close()
	// The same file's on_request, in a runtime of its own: it puts low-priority and
	// short prompts in their model's economy lane.
	if g.access, err = luabind.New(src, luabind.WithConfig(luaCfg), luabind.WithLogger(logger)); err != nil {
		return err
	}
	defer g.access.Close()
	if g.adm, err = middleware.NewAdmission(middleware.AdmissionConfig{}); err != nil {
		return err
	}

	chains := map[string][]string{}
	for _, s := range g.specs {
		if len(s.fallback) > 0 {
			chains[s.name] = s.fallback
			if s.cheaper != "" {
				chains[s.name+lane] = s.fallback
			}
		}
	}
	if g.llm, err = newLLM(g.reg, g.specs, demoBudgets(), logger); err != nil {
		return err
	}
	if g.proxy, err = balancer.NewProxy(g.pool, balancer.WithRetryAfter(2*time.Second), balancer.WithSetModel(setModel),
		balancer.WithFallback(balancer.Fallback{Chains: chains, Timeout: 20 * time.Second, Cooldown: 3 * time.Second})); err != nil {
		return err
	}
	defer g.proxy.CloseIdleConnections()
	g.hold = &holder{fleet: g.fleet, pool: g.pool, lane: lane, timeout: 30 * time.Second, next: g.proxy}
	front, err := frontend(g, logger)
	if err != nil {
		return err
	}

	var targets []autoscale.Target
	for _, s := range g.specs {
		targets = append(targets, autoscale.Target{Name: s.name, Min: s.min, Max: s.max, Actuator: g.fleet.actuator(s.name),
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}})
	}
	if g.loop, err = autoscale.NewLoop(
		autoscale.WithPolicy(g.policy),
		autoscale.WithRegistry(g.reg),
		autoscale.WithTick(cfg.tick),
		autoscale.WithTargets(targets...),
		autoscale.WithRouter(g.adm),
		autoscale.WithBudgeter(g.llm.Budgets()), // a policy's budget actions
		autoscale.WithLogger(logger),
		autoscale.WithObserver(func(tk autoscale.Tick) { printTick(out, g, tk) }),
	); err != nil {
		return err
	}
	defer g.loop.Close()
	if g.dash, err = dashboard.New(dashboard.WithLoop(g.loop), dashboard.WithRegistry(g.reg), dashboard.WithModels(dashboard.ModelScopes{}),
		dashboard.WithTitle("autoscalelua AI gateway demo"), dashboard.WithCounters(func() map[string]uint64 { return counters(g) })); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/debug/autoscale/", http.StripPrefix("/debug/autoscale", g.dash))
	mux.Handle("/v1/", front)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.url = "http://" + ln.Addr().String()
	phases := demoPhases(cfg.scale)
	if cfg.phases != nil {
		phases = cfg.phases
	}
	g.load = &loadgen{client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}},
		url: g.url + "/v1/chat/completions", phases: phases, max: 1024, seed: 1}
	defer g.load.client.CloseIdleConnections()

	fmt.Fprintf(out, "gateway on %s/v1  dashboard %s/debug/autoscale/\n", g.url, g.url)
	for _, s := range g.specs {
		fmt.Fprintf(out, "model %-9s replicas %d..%d, %4.0f prefill + %3.0f decode tok/s, batch %2d, KV %5d tokens, cold start %v, $%.2f/$%.2f per M tokens\n",
			s.name, s.min, s.max, s.prefillTPS, s.decodeTPS, s.batch, s.kvTokens, s.coldStart, s.inputPrice*1e6, s.outputPrice*1e6)
	}
	fmt.Fprintf(out, "policy llm_cost, tick %v, idle to zero after %v; chains: llama-70b → llama-8b → hosted\n", cfg.tick, cfg.idle)
	for _, b := range demoBudgets() {
		fmt.Fprintf(out, "budget %s\n", b)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	wg.Go(func() { g.loop.Run(ctx) })
	wg.Go(func() { g.dash.Run(ctx) })
	loadDone := make(chan struct{})
	wg.Go(func() {
		defer close(loadDone)
		if !cfg.noLoad {
			g.load.run(ctx)
		}
	})
	if cfg.ready != nil {
		cfg.ready(g)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		stop()
	}
	<-loadDone
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	wg.Wait()
	c := g.load.counts()
	fmt.Fprintf(out, "sent %d: served %d (%d after a fallback), budget-rejected %d, shed %d, overloaded %d, errored %d; held for a cold start %d\n",
		c.Sent, c.Served, c.FellBack, c.BudgetRejected, c.Shed, c.Overloaded, c.Errored, g.hold.held.Load())
	return runErr
}

// policyConfig is llm_cost's config for the demo's models.
func policyConfig(specs []*modelSpec, cfg config) map[string]any {
	models := map[string]any{}
	for _, s := range specs {
		m := map[string]any{"target": s.name, "slots": s.batch, "max_queue": s.batch / 2}
		if s.cheaper != "" {
			m["cheaper"] = s.cheaper
			m["ttft_ms"] = 2500
		}
		models[s.name] = m
	}
	idle := -1.0
	if cfg.idle > 0 {
		idle = cfg.idle.Seconds()
	}
	span := 10.0
	if cfg.span > 0 {
		span = cfg.span.Seconds()
	}
	return map[string]any{"models": models, "lane": lane, "low_priority": 0, "short_tokens": 64,
		"span": span, "down_ticks": 5, "idle_to_zero": idle}
}

// String is the budget as the banner and -h show it.
func (b budget) String() string {
	who := "tenant " + b.tenant
	if b.tenant == llm.AnyTenant {
		who = "every other tenant"
	}
	if b.model != "" {
		who += " on " + b.model
	}
	burst := b.Burst
	if burst == 0 {
		burst = b.TokensPerMinute
	}
	return fmt.Sprintf("%s: %d tokens a minute, burst %d", who, b.TokensPerMinute, burst)
}

// newLLM is the gateway's LLM layer: it reads each request's body once (model, tenant,
// prompt), estimates its tokens, guards context windows, holds each tenant to its
// token budgets, and reads the usage the model servers report into the token, TTFT
// and cost windows per model.
func newLLM(reg *metrics.Registry, specs []*modelSpec, budgets []budget, logger *slog.Logger) (*llm.Gateway, error) {
	var rows []llm.Model
	for _, s := range specs {
		rows = append(rows, llm.Model{Name: s.name, ContextWindow: int64(s.kvTokens), InputPrice: s.inputPrice, OutputPrice: s.outputPrice})
	}
	models, err := llm.NewModels(rows...)
	if err != nil {
		return nil, err
	}
	b, err := llm.NewBudgets(llm.BudgetsConfig{}, nil)
	if err != nil {
		return nil, err
	}
	for _, x := range budgets {
		if err := b.Set(x.tenant, x.model, x.Budget); err != nil {
			return nil, err
		}
	}
	return llm.New(llm.Config{Guard: llm.GuardRefuse}, llm.WithRegistry(reg), llm.WithModels(models), llm.WithBudgets(b), llm.WithLogger(logger))
}

// setModel makes a re-routed request's body name the model it is sent to; the economy
// lane is the gateway's own name, never an upstream's.
func setModel(r *http.Request, model string) error {
	model = strings.TrimSuffix(model, lane)
	if q, ok := llm.FromRequest(r); ok && q.Model == model {
		return nil
	}
	return llm.SetModel(r, model)
}

// frontend is the gateway's request path: the LLM layer (body, tokens, usage), then
// classify (the body's model and tenant, the priority header), run llm_cost's
// on_request (the economy lane), admit (the policy's route rules), record, hold a
// request for a cold model until it wakes, and proxy by model with fallback.
func frontend(g *gateway, logger *slog.Logger) (http.Handler, error) {
	inner, err := middleware.Wrap(g.hold,
		middleware.WithRegistry(g.reg),
		middleware.WithLogger(logger),
		middleware.WithClassifier(llm.Classifier(func(r *http.Request) middleware.Keys {
			k := middleware.Keys{Route: "chat"}
			if v := r.Header[priorityHeader]; len(v) > 0 { // canonical: no Get
				k.Priority, _ = strconv.Atoi(v[0])
			}
			return k
		})),
		middleware.WithHook(luahttp.Hook(g.access, luahttp.WithTokens(llm.PromptTokens))),
		middleware.WithAdmission(g.adm),
	)
	if err != nil {
		return nil, err
	}
	return g.llm.Wrap(inner), nil
}

func counters(g *gateway) map[string]uint64 {
	st := g.proxy.Stats().Fallback
	ls := g.llm.Stats()
	return map[string]uint64{
		"llm requests": ls.Requests, "context refused": ls.GuardRefused, "budget rejected": ls.BudgetRejected, "no usage": ls.NoUsage,
		"fallback 429": st.RateLimited, "fallback 5xx": st.ServerErrors, "fallback timeout": st.Timeouts,
		"fallback unavailable": st.Unavailable, "held for a cold start": uint64(g.hold.held.Load()),
	}
}

// printTick prints one line per decision that changed something, and one per route
// action, each with its reason.
func printTick(out io.Writer, g *gateway, tk autoscale.Tick) {
	at := tk.Time.Format("15:04:05")
	for _, d := range tk.Decisions {
		if d.Desired == d.Current && d.Policy.Err == "" {
			continue
		}
		ready, _ := g.fleet.ready(d.Target)
		running, kv, kvCap, queued := g.fleet.engineLoad(d.Target)
		fill := 0
		if kvCap > 0 {
			fill = 100 * kv / kvCap
		}
		line := fmt.Sprintf("%s scale %-9s %d → %d %-4s %-9s ready %d, batch %d, queued %d, KV %d%%", at, d.Target, max(d.Current, 0), d.Desired, d.Direction, d.Why, ready, running, queued, fill)
		if d.Policy.Reason != "" {
			line += "  " + d.Policy.Reason
		}
		if d.Policy.Err != "" {
			line += "  policy error: " + d.Policy.Err
		}
		fmt.Fprintln(out, line)
	}
	for _, a := range tk.Actions {
		r, ok := a.Action.(autoscale.Route)
		if !ok {
			continue
		}
		fmt.Fprintf(out, "%s route %s → %s %.0f%% %s  %s\n", at, r.From, r.To, 100*r.Fraction, a.Why, r.Reason)
	}
}
