// Command kubernetes is a gateway that autoscales the Deployment behind it on
// Kubernetes: it proxies requests to the ready pods of a Service (followed through its
// EndpointSlices), records them in metric windows, and runs the scaling loop with the
// Knative Pod Autoscaler policy on the route's concurrency. Several replicas of it
// elect one leader with a Lease; only the leader scales.
//
// Outside the cluster, with a kubeconfig:
//
//	go run ./examples/kubernetes --kubeconfig ~/.kube/config --namespace shop \
//		--deployment web --service web --port-name http
//
// In the cluster, apply rbac.yaml and gateway.yaml from this folder (the gateway then
// uses its service account; see the comments in the manifests).
//
// Every tick it prints the loop's decision for the Deployment.
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
	"sync"
	"syscall"
	"time"

	clientset "k8s.io/client-go/kubernetes"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed
		}
		fmt.Fprintln(os.Stderr, "kubernetes:", err)
		os.Exit(1)
	}
}

type flags struct {
	kubeconfig, kubeContext  string
	namespace                string
	deployment, kind         string
	service, portName        string
	lease, identity          string
	listen                   string
	targetConcurrency        float64
	minReplicas, maxReplicas int
	tick                     time.Duration
	dryRun                   bool
}

func parse(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("kubernetes", flag.ContinueOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: in-cluster, else $KUBECONFIG or ~/.kube/config")
	fs.StringVar(&f.kubeContext, "context", "", "kubeconfig context; empty: the current one")
	fs.StringVar(&f.namespace, "namespace", envOr("POD_NAMESPACE", "default"), "namespace of the Deployment, the Service and the Lease")
	fs.StringVar(&f.deployment, "deployment", "web", "name of the resource to scale")
	fs.StringVar(&f.kind, "kind", "deployments.apps", "its kind: any resource with a /scale subresource")
	fs.StringVar(&f.service, "service", "", "Service whose ready endpoints receive the traffic; empty: the deployment's name")
	fs.StringVar(&f.portName, "port-name", "http", "name of the Service port (empty for a single unnamed port)")
	fs.StringVar(&f.lease, "lease", "autoscalelua-gateway", "name of the Lease the gateway replicas compete for")
	fs.StringVar(&f.identity, "identity", os.Getenv("POD_NAME"), "this replica's identity in the Lease; empty: host name and a random suffix")
	fs.StringVar(&f.listen, "listen", ":8080", "address to serve the proxy on")
	fs.Float64Var(&f.targetConcurrency, "target-concurrency", 10, "requests in flight one pod should carry (the KPA's target)")
	fs.IntVar(&f.minReplicas, "min", 1, "fewest replicas")
	fs.IntVar(&f.maxReplicas, "max", 10, "most replicas")
	fs.DurationVar(&f.tick, "tick", time.Second, "scaling loop period")
	fs.BoolVar(&f.dryRun, "dry-run", false, "decide and print, but do not scale")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.service == "" {
		f.service = f.deployment
	}
	return f, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// run serves the gateway until ctx ends, then shuts it down: the loop stops, the
// Lease is released and the server drains.
func run(ctx context.Context, args []string, out io.Writer) error {
	return runWith(ctx, args, out, nil)
}

// runWith is run with the proxy's transport replaced when transport is not nil.
func runWith(ctx context.Context, args []string, out io.Writer, transport http.RoundTripper) error {
	f, err := parse(args)
	if err != nil {
		return err
	}
	cfg, err := kubernetes.Config(f.kubeconfig, f.kubeContext)
	if err != nil {
		return err
	}
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Scale through /scale; actuate only while this replica leads.
	act, err := kubernetes.New(cfg, kubernetes.WithNamespace(f.namespace))
	if err != nil {
		return err
	}
	el, err := kubernetes.NewElector(client, kubernetes.ElectorConfig{Namespace: f.namespace, Name: f.lease, Identity: f.identity},
		kubernetes.WithElectorLogger(logger),
		kubernetes.WithOnChange(func(leading bool) { fmt.Fprintf(out, "leading: %v\n", leading) }))
	if err != nil {
		return err
	}

	// The pool follows the Service's ready endpoints; the middleware records every
	// request under the route named after the Deployment.
	reg, err := metrics.NewRegistry()
	if err != nil {
		return err
	}
	pool, err := balancer.New(balancer.WithRegistry(reg))
	if err != nil {
		return err
	}
	slices, err := kubernetes.NewEndpointSlices(client, kubernetes.Service{Namespace: f.namespace, Name: f.service, PortName: f.portName},
		kubernetes.WithDiscoveryLogger(logger))
	if err != nil {
		return err
	}
	var popts []balancer.ProxyOption
	if transport != nil {
		popts = append(popts, balancer.WithTransport(transport))
	}
	proxy, err := balancer.NewProxy(pool, popts...)
	if err != nil {
		return err
	}
	route := f.deployment
	reg.Window(metrics.ScopeRoute, route) // an idle gateway reads as zero demand, not as missing metrics
	mw, err := middleware.New(middleware.WithRegistry(reg),
		middleware.WithClassifier(func(*http.Request) middleware.Keys { return middleware.Keys{Route: route} }))
	if err != nil {
		return err
	}

	// Knative's 30 s grace before a scale to zero (the decider itself has none).
	kpa, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: f.targetConcurrency, ScaleToZeroGrace: 30 * time.Second,
		Source: autoscale.Source{Scope: metrics.ScopeRoute, Key: route}})
	if err != nil {
		return err
	}
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(kpa),
		autoscale.WithTargets(autoscale.Target{
			Name: route, Ref: actuator.Target{Namespace: f.namespace, Kind: f.kind, Name: f.deployment},
			Min: f.minReplicas, Max: f.maxReplicas,
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}, // the KPA's own windows govern
		}),
		autoscale.WithDefaultActuator(el.Gate(act)),
		autoscale.WithElector(el),
		autoscale.WithRegistry(reg),
		autoscale.WithTick(f.tick),
		autoscale.WithDryRun(f.dryRun),
		autoscale.WithLogger(logger),
	)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mw(proxy), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(out, "listening on http://%s, scaling %s %s/%s as %s\n", ln.Addr(), f.kind, f.namespace, f.deployment, el.Identity())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	spawn := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				cancel() // one part failing stops the gateway
			}
		}()
	}
	spawn("elector", func() error { return el.Run(ctx) })
	spawn("discovery", func() error { return pool.Sync(ctx, slices) })
	spawn("loop", func() error { return loop.Run(ctx) })
	spawn("decisions", func() error { printDecisions(ctx, out, loop, f.tick); return nil })
	spawn("server", func() error { return srv.Serve(ln) })

	<-ctx.Done()
	shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	serr := srv.Shutdown(shutdown)
	wg.Wait()
	if serr != nil {
		errs = append(errs, fmt.Errorf("server shutdown: %w", serr))
	}
	proxy.CloseIdleConnections()
	return errors.Join(errs...)
}

// printDecisions prints each new decision of the loop once.
func printDecisions(ctx context.Context, out io.Writer, loop *autoscale.Loop, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ds := loop.Decisions()
		if len(ds) == 0 || ds[len(ds)-1].ID == last {
			continue
		}
		d := ds[len(ds)-1]
		last = d.ID
		fmt.Fprintf(out, "%s %s: current %d, desired %d, %s (%s)\n",
			d.Time.Format(time.TimeOnly), d.Target, d.Current, d.Desired, d.Why, d.Policy.Reason)
	}
}
