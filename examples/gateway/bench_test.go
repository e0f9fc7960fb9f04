package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/internal/proxybench"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// benchServers are the servers the gateway's benchmarks and latency harness compare,
// all over loopback to one fast backend: the demo gateway's request path (metrics,
// access.lua's on_request, admission with a throttled tenant, the balancer's proxy),
// a bare httputil.ReverseProxy with a buffer pool, and the balancer's proxy alone.
type benchServers struct {
	backend, gateway, bare, proxyOnly *httptest.Server
}

// benchTenants are the tenants the benchmarks' requests carry, in turn; "free" is
// throttled, at a rate no benchmark reaches.
var benchTenants = []string{"acme", "globex", "free"}

// newBenchServers starts the benchServers; tb's cleanup closes them.
func newBenchServers(tb testing.TB) *benchServers {
	tb.Helper()
	s := &benchServers{backend: proxybench.FastBackend()}
	tb.Cleanup(s.backend.Close)
	u, _ := url.Parse(s.backend.URL)
	s.bare = httptest.NewServer(proxybench.BareProxy(u))
	tb.Cleanup(s.bare.Close)

	reg, _ := metrics.NewRegistry()
	pool, err := balancer.New(balancer.WithRegistry(reg), balancer.WithAlgorithm(&balancer.PeakEWMA{}))
	if err != nil {
		tb.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "b1", URL: s.backend.URL}}); err != nil {
		tb.Fatal(err)
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithTransport(&http.Transport{MaxIdleConnsPerHost: 256}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(proxy.CloseIdleConnections)
	adm, _ := middleware.NewAdmission(middleware.AdmissionConfig{})
	adm.Throttle("free", 1e9, 1e9)
	access, err := luabind.New(luabind.FromString("access.lua", accessScript))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { access.Close() })
	front, err := frontend(reg, adm, access, slog.New(slog.DiscardHandler), proxy)
	if err != nil {
		tb.Fatal(err)
	}
	s.gateway = httptest.NewServer(front)
	tb.Cleanup(s.gateway.Close)
	s.proxyOnly = httptest.NewServer(proxy)
	tb.Cleanup(s.proxyOnly.Close)
	return s
}

// BenchmarkGatewayVsBareProxy measures, in one run, the throughput of the demo
// gateway's request path and of a bare httputil.ReverseProxy with a buffer pool (see
// benchServers), with the same client. Rounds alternate between them so that drift on
// a shared machine hits both; the figures are medians over rounds. "ratio" is
// gateway/bare throughput; "cpu-ratio" is gateway/bare requests per CPU-second of the
// whole process, steadier when neighbours load the machine. "proxy-only" is the
// balancer's proxy without the middleware.
//
//	go test -run '^$' -bench GatewayVsBareProxy -benchtime 1x ./examples/gateway
func BenchmarkGatewayVsBareProxy(b *testing.B) {
	s := newBenchServers(b)
	const conc = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	// Each client sends its own GET, reused: the same request for every server.
	reqs := func(target string) []*http.Request {
		rs := make([]*http.Request, conc)
		for w := range rs {
			rs[w], _ = http.NewRequest(http.MethodGet, target+"/api/items", nil)
			rs[w].Header.Set(middleware.TenantHeader, benchTenants[w%len(benchTenants)])
		}
		return rs
	}
	gwReqs, bareReqs, onlyReqs := reqs(s.gateway.URL), reqs(s.bare.URL), reqs(s.proxyOnly.URL)
	load := func(rs []*http.Request, d time.Duration) (float64, float64) {
		return proxybench.Load(b, client, conc, d, func(w int) *http.Request { return rs[w] })
	}
	median := proxybench.Median
	for b.Loop() {
		load(gwReqs, 300*time.Millisecond) // warm up both
		load(bareReqs, 300*time.Millisecond)
		var gw, br, on, gwCPU, brCPU []float64
		for range 9 {
			r, c := load(gwReqs, 700*time.Millisecond)
			gw, gwCPU = append(gw, r), append(gwCPU, c)
			r, c = load(bareReqs, 700*time.Millisecond)
			br, brCPU = append(br, r), append(brCPU, c)
			r, _ = load(onlyReqs, 700*time.Millisecond)
			on = append(on, r)
		}
		g, r := median(gw), median(br)
		b.ReportMetric(g, "gateway-req/s")
		b.ReportMetric(r, "bare-req/s")
		b.ReportMetric(median(on), "proxy-only-req/s")
		b.ReportMetric(g/r, "ratio")
		b.ReportMetric(median(gwCPU)/median(brCPU), "cpu-ratio")
	}
}

// discardWriter is a ResponseWriter that keeps only its header map, cleared between
// requests, so that BenchmarkFrontend measures the gateway's layers and not a recorder.
type discardWriter struct{ hdr http.Header }

func (w *discardWriter) Header() http.Header         { return w.hdr }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkFrontend is the cost of the layers the demo gateway puts in front of its
// proxy (frontend: classification, access.lua's on_request, admission with the free
// tenant throttled, and recording into the route's and tenant's windows), in process
// around a handler that writes "ok\n", for each of benchTenants: the gap between
// BenchmarkGatewayVsBareProxy's gateway and proxy-only figures, without the network.
//
//	go test -run '^$' -bench Frontend -benchmem ./examples/gateway
func BenchmarkFrontend(b *testing.B) {
	reg, _ := metrics.NewRegistry()
	adm, _ := middleware.NewAdmission(middleware.AdmissionConfig{})
	adm.Throttle("free", 1e9, 1e9)
	access, err := luabind.New(luabind.FromString("access.lua", accessScript))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { access.Close() })
	ok := []byte("ok\n")
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(ok) })
	front, err := frontend(reg, adm, access, slog.New(slog.DiscardHandler), next)
	if err != nil {
		b.Fatal(err)
	}
	for _, tenant := range benchTenants {
		b.Run(tenant, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/items", nil)
			req.Header.Set(middleware.TenantHeader, tenant)
			w := &discardWriter{hdr: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				front.ServeHTTP(w, req)
				clear(w.hdr)
			}
		})
	}
}
