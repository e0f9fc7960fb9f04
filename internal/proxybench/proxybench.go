// Package proxybench is what the examples' gateway-versus-bare-proxy benchmarks
// share: the fast backend and the bare httputil.ReverseProxy they compare against, and
// a load loop of closed-loop clients over loopback, counted against wall time and
// against the process's CPU time, with medians over interleaved rounds.
package proxybench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// FastBackend starts a backend that answers "ok\n" at once, so that what a benchmark
// measures is the proxy in front of it. The caller closes it.
func FastBackend() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
}

// BareProxy is the baseline a gateway is compared with: an httputil.ReverseProxy to
// backend with a buffer pool and a transport keeping 256 idle connections, as a
// careful user would write it by hand.
func BareProxy(backend *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(backend); pr.SetXForwarded() },
		BufferPool: balancer.NewBufferPool(),
		Transport:  &http.Transport{MaxIdleConnsPerHost: 256},
	}
}

// Load runs conc clients for d, each sending the requests next(worker) returns and
// reading every response whole, and returns the requests served per second of wall
// time and per second of the process's CPU time (client, server and backend alike;
// the client's and backend's shares are the same for every server compared). A
// transport error or a status other than 200 fails tb and stops that client.
func Load(tb testing.TB, client *http.Client, conc int, d time.Duration, next func(worker int) *http.Request) (perSecond, perCPUSecond float64) {
	cpu0 := CPUTime()
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for w := range conc {
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := client.Do(next(w))
				if err != nil {
					tb.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					tb.Errorf("status %d", resp.StatusCode)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds(), float64(n.Load()) / (CPUTime() - cpu0).Seconds()
}

// Median returns the median of xs, sorting xs in place.
func Median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// CPUTime returns the user and system CPU time the process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
