// Command basic is the smallest use of autoscalelua: an HTTP server whose handlers are
// wrapped by the recording middleware, printing its metric windows every second.
//
//	go run ./examples/basic
//
// It sends itself a little traffic (turn that off with -selfload=false and use curl, hey
// or wrk instead), and prints per route and per tenant the request rate, error rate,
// p99 latency and time-weighted concurrency over the last ten seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed
		}
		fmt.Fprintln(os.Stderr, "basic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("basic", flag.ContinueOnError)
	addr := fs.String("addr", "localhost:8080", "address to listen on")
	every := fs.Duration("interval", time.Second, "how often to print the windows")
	selfLoad := fs.Bool("selfload", true, "send the server a few requests a second")
	if err := fs.Parse(args); err != nil {
		return err
	}

	reg, err := metrics.NewRegistry()
	if err != nil {
		return err
	}
	mw, err := middleware.New(middleware.WithRegistry(reg))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /fast", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fast\n")
	})))
	mux.Handle("GET /slow", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(20+rand.IntN(60)) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		if rand.IntN(20) == 0 {
			http.Error(w, "unlucky", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "slow\n")
	})))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Fprintf(out, "listening on http://%s (try /fast and /slow with an X-Tenant-ID header)\n", ln.Addr())

	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		if *selfLoad {
			selfload(ctx, "http://"+ln.Addr().String())
		}
	}()

	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-loadDone
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(shutdown); err != nil {
				return err
			}
			if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		case <-tick.C:
			printWindows(out, reg)
		}
	}
}

func printWindows(out io.Writer, reg *metrics.Registry) {
	now := reg.Clock().Now()
	fmt.Fprintf(out, "--- %s\n", now.Format(time.TimeOnly))
	for _, scope := range []metrics.Scope{metrics.ScopeRoute, metrics.ScopeTenant} {
		for _, key := range reg.Keys(scope) {
			w, ok := reg.Lookup(scope, key)
			if !ok {
				continue
			}
			s := w.SnapshotAt(now, 10*time.Second)
			fmt.Fprintf(out, "%-6s %-14s %6.1f req/s  errors %4.1f%%  p99 %7v  concurrency %.2f\n",
				scope, key, s.Rate, 100*s.ErrorRate, s.P99.Round(100*time.Microsecond), s.Concurrency)
		}
	}
}

// selfload sends a few requests a second from three tenants until ctx ends.
func selfload(ctx context.Context, base string) {
	client := &http.Client{Timeout: 5 * time.Second}
	tenants := []string{"acme", "globex", "initech"}
	paths := []string{"/fast", "/slow"}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, "GET", base+paths[i%2], nil)
		if err != nil {
			return
		}
		req.Header.Set("X-Tenant-ID", tenants[i%3])
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
