package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// BenchmarkGatewayVsBareProxy measures, in one run, the throughput of the demo
// gateway's request path (metrics, access.lua's on_request, admission with a
// throttled tenant, the balancer's proxy) and of a bare httputil.ReverseProxy with a
// buffer pool, both over loopback to the same fast backend, with the same client.
// Rounds alternate between the two so that drift on a shared machine hits both; the
// figures are medians over rounds, and "ratio" is gateway/bare.
//
//	go test -run '^$' -bench GatewayVsBareProxy -benchtime 1x ./examples/gateway
func BenchmarkGatewayVsBareProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)

	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		BufferPool: balancer.NewBufferPool(),
		Transport:  &http.Transport{MaxIdleConnsPerHost: 256},
	}
	bareSrv := httptest.NewServer(bare)
	defer bareSrv.Close()

	reg, _ := metrics.NewRegistry()
	pool, err := balancer.New(balancer.WithRegistry(reg), balancer.WithAlgorithm(&balancer.PeakEWMA{}))
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "b1", URL: backend.URL}}); err != nil {
		b.Fatal(err)
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithTransport(&http.Transport{MaxIdleConnsPerHost: 256}))
	if err != nil {
		b.Fatal(err)
	}
	adm, _ := middleware.NewAdmission(middleware.AdmissionConfig{})
	adm.Throttle("free", 1e9, 1e9)
	access, err := luabind.New(luabind.FromString("access.lua", accessScript))
	if err != nil {
		b.Fatal(err)
	}
	defer access.Close()
	logger := slog.New(slog.DiscardHandler)
	gwSrv := httptest.NewServer(frontend(reg, adm, access, logger, proxy))
	defer gwSrv.Close()
	onlySrv := httptest.NewServer(proxy)
	defer onlySrv.Close()

	const conc = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	load := func(target string, d time.Duration) float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for w := range conc {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", target+"/api/items", nil)
				req.Header.Set(middleware.TenantHeader, []string{"acme", "globex", "free"}[w%3])
				for time.Now().Before(stop) {
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(n.Load()) / d.Seconds()
	}
	median := func(xs []float64) float64 {
		sort.Float64s(xs)
		return xs[len(xs)/2]
	}
	for b.Loop() {
		load(gwSrv.URL, 300*time.Millisecond) // warm up both
		load(bareSrv.URL, 300*time.Millisecond)
		var gw, br, on []float64
		for range 5 {
			gw = append(gw, load(gwSrv.URL, time.Second))
			br = append(br, load(bareSrv.URL, time.Second))
			on = append(on, load(onlySrv.URL, time.Second))
		}
		b.ReportMetric(median(on), "proxy-only-req/s")
		g, r := median(gw), median(br)
		b.ReportMetric(g, "gateway-req/s")
		b.ReportMetric(r, "bare-req/s")
		b.ReportMetric(g/r, "ratio")
	}
}
