// Command proxyload compares the throughput of balancer.Proxy with a bare
// httputil.ReverseProxy (Rewrite with SetURL and SetXForwarded, and a BufferPool) in
// the same run, on loopback: one backend server, the two proxies in front of it, and a
// closed-loop Go load generator with keep-alive connections. Rounds alternate between
// the two proxies (bare, balancer, bare, ...) so that drift in the machine's load hits
// both alike (the order alternates too); it prints each round and the ratio of the
// medians, of requests per second and of the process's CPU time per request. On a
// machine shared with other work the CPU figure is the steadier: the wall-clock rate
// moves with what else runs.
//
//	go run ./balancer/internal/proxyload -rounds 5 -duration 3s -conc 32 -size 1024
//
// With -serve it only serves, for an external load generator: wrk.sh runs wrk
// (apt-get install wrk) against both proxies in alternation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds per proxy")
	duration := flag.Duration("duration", 3*time.Second, "length of a round")
	conc := flag.Int("conc", 32, "concurrent clients")
	size := flag.Int("size", 1024, "response body size in bytes")
	backends := flag.Int("backends", 1, "backend servers (the bare proxy uses the first)")
	alg := flag.String("alg", "p2c", "balancer algorithm: rr, p2c, ewma, hash")
	flush := flag.Duration("flush", 0, "FlushInterval of the balancer's proxy for responses with a Content-Length (its default, 0)")
	bareFlush := flag.Duration("bare-flush", 0, "FlushInterval of the bare proxy (httputil's default is 0)")
	serveOnly := flag.Bool("serve", false, "only serve: print the two proxies' URLs and wait for stdin to close (for an external load generator such as wrk; see wrk.sh)")
	aa := flag.Bool("aa", false, "A/A check: put a second bare proxy where the balancer's goes, to see the harness's own bias")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if err := run(*rounds, *duration, *conc, *size, *backends, *alg, *flush, *bareFlush, *aa, *serveOnly); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		_ = srv.Shutdown(context.Background())
		<-done
	}, nil
}

func transport(conc int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * conc
	t.MaxIdleConnsPerHost = 2 * conc
	return t
}

// countDials makes t count the connections it dials.
func countDials(t *http.Transport) *atomic.Int64 {
	n := new(atomic.Int64)
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	return n
}

func run(rounds int, d time.Duration, conc, size, nBackends int, alg string, flush, bareFlush time.Duration, aa, serveOnly bool) error {
	body := []byte(strings.Repeat("x", size))
	var urls []string
	for range nBackends {
		u, stop, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(body)
		}))
		if err != nil {
			return err
		}
		defer stop()
		urls = append(urls, u)
	}

	target, err := url.Parse(urls[0])
	if err != nil {
		return err
	}
	bareTr := transport(conc)
	bareDials := countDials(bareTr)
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:     bareTr,
		BufferPool:    balancer.NewBufferPool(),
		FlushInterval: bareFlush,
		ErrorLog:      log.New(io.Discard, "", 0),
	}

	var a balancer.Algorithm
	switch alg {
	case "rr":
		a = balancer.RoundRobin{}
	case "p2c":
		a = &balancer.P2C{}
	case "ewma":
		a = &balancer.PeakEWMA{}
	case "hash":
		a = &balancer.Hash{}
	default:
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	pool, err := balancer.New(balancer.WithAlgorithm(a))
	if err != nil {
		return err
	}
	var eps []balancer.Endpoint
	for i, u := range urls {
		eps = append(eps, balancer.Endpoint{ID: fmt.Sprint("be", i), URL: u})
	}
	if err := pool.Update(eps); err != nil {
		return err
	}
	ourTr := transport(conc)
	ourDials := countDials(ourTr)
	px, err := balancer.NewProxy(pool, balancer.WithTransport(ourTr), balancer.WithErrorLog(log.New(io.Discard, "", 0)),
		balancer.WithKey(balancer.HeaderKey("X-Tenant")), balancer.WithFlushInterval(flush))
	if err != nil {
		return err
	}
	bareURL, stopBare, err := serve(bare)
	if err != nil {
		return err
	}
	defer stopBare()
	var ours http.Handler = px
	if aa {
		ours = &httputil.ReverseProxy{Rewrite: bare.Rewrite, Transport: ourTr, BufferPool: balancer.NewBufferPool(), FlushInterval: bareFlush, ErrorLog: bare.ErrorLog}
		fmt.Println("A/A: the balancer's slot runs a second bare proxy")
	}
	ourURL, stopOur, err := serve(ours)
	if err != nil {
		return err
	}
	defer stopOur()

	if serveOnly {
		fmt.Printf("bare=%s/x\nbalancer=%s/x\n", bareURL, ourURL)
		_, _ = io.Copy(io.Discard, os.Stdin) // until stdin closes
		bareTr.CloseIdleConnections()
		px.CloseIdleConnections()
		return nil
	}
	clientTr := transport(conc)
	clientDials := countDials(clientTr)
	client := &http.Client{Transport: clientTr}
	// Warm up connections on both.
	for _, u := range []string{bareURL, ourURL} {
		if _, err := load(client, u, conc, 300*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Printf("proxyload: %d rounds of %v, %d clients, %d-byte responses, %d backend(s), algorithm %s, flush %v (bare %v), GOMAXPROCS %d\n",
		rounds, d, conc, size, nBackends, alg, flush, bareFlush, runtimeProcs())
	var bareRPS, ourRPS, bareCPU, ourCPU []float64
	for i := range rounds {
		// Alternate which goes first, so that neither always inherits the other's
		// garbage or a drift in the machine's load.
		var b, bc, o, oc float64
		var err1, err2 error
		if i%2 == 0 {
			b, bc, err1 = measure(client, bareURL, conc, d)
			o, oc, err2 = measure(client, ourURL, conc, d)
		} else {
			o, oc, err2 = measure(client, ourURL, conc, d)
			b, bc, err1 = measure(client, bareURL, conc, d)
		}
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		bareRPS, ourRPS = append(bareRPS, b), append(ourRPS, o)
		bareCPU, ourCPU = append(bareCPU, bc), append(ourCPU, oc)
		fmt.Printf("round %d: bare %7.0f req/s %6.1f cpu-µs/req   balancer %7.0f req/s %6.1f cpu-µs/req   throughput ratio %.3f   cpu ratio %.3f\n",
			i+1, b, bc, o, oc, o/b, bc/oc)
	}
	mb, mo := median(bareRPS), median(ourRPS)
	cb, co := median(bareCPU), median(ourCPU)
	fmt.Printf("median: bare %.0f req/s, balancer %.0f req/s: throughput ratio %.3f\n", mb, mo, mo/mb)
	fmt.Printf("median: bare %.1f, balancer %.1f CPU-µs per request (whole process: clients, proxy, backend): throughput at equal CPU, ratio %.3f\n", cb, co, cb/co)
	fmt.Printf("connections dialed to the backend: bare %d, balancer %d; by the clients to both proxies: %d\n", bareDials.Load(), ourDials.Load(), clientDials.Load())
	st := pool.Stats()
	fmt.Printf("pool: %d members, %d ready, %d no-backend\n", st.Members, st.Ready, st.NoBackend)
	client.CloseIdleConnections()
	bareTr.CloseIdleConnections()
	px.CloseIdleConnections()
	return nil
}

// measure runs load and returns requests per second and the process's CPU time
// (user + system) per request, in microseconds. The CPU figure does not depend on what
// else the machine runs, which the wall-clock rate does.
func measure(c *http.Client, u string, conc int, d time.Duration) (float64, float64, error) {
	before := cpuTime()
	start := time.Now()
	rps, err := load(c, u, conc, d)
	n := rps * time.Since(start).Seconds()
	cpu := cpuTime() - before
	return rps, float64(cpu.Microseconds()) / n, err
}

// load runs conc closed-loop clients against u for d and returns completed requests
// per second; a non-200 answer is an error.
func load(c *http.Client, u string, conc int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			tenant := fmt.Sprint("t", g)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodGet, u+"/x", nil)
				req.Header.Set("X-Tenant", tenant)
				res, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d from %s", res.StatusCode, u)
					}
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), firstErr
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
