package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/internal/proxybench"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// benchServers are BenchmarkGatewayVsBareProxy's three servers over one simulated
// model server: the demo's gateway, the bare reverse proxy and the balancer's proxy
// alone.
type benchServers struct {
	gw, bare, only string // base URLs
	close          func()
}

// newBenchServers starts the benchServers; close stops them.
func newBenchServers(b *testing.B) *benchServers {
	var closers []func()
	s := &benchServers{close: func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}}
	spec := &modelSpec{name: "llama-8b", batch: 1024, queue: 1024, kvTokens: 1 << 30}
	engine := &modelServer{spec: spec, id: "bench"}
	backend := httptest.NewServer(engine)
	closers = append(closers, backend.Close)
	u, _ := url.Parse(backend.URL)

	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		BufferPool: balancer.NewBufferPool(),
		Transport:  &http.Transport{MaxIdleConnsPerHost: 256},
	}
	bareSrv := httptest.NewServer(bare)
	closers = append(closers, bareSrv.Close)
	g := &gateway{specs: []*modelSpec{{name: "llama-70b", cheaper: "llama-8b", batch: 8, kvTokens: 8000}, spec}}
	var err error
	if g.reg, err = metrics.NewRegistry(); err != nil {
		b.Fatal(err)
	}
	if g.pool, err = balancer.New(balancer.WithRegistry(g.reg), balancer.WithWindowConcurrency()); err != nil {
		b.Fatal(err)
	}
	if err := g.pool.Update([]balancer.Endpoint{{ID: "llama-8b-1", URL: backend.URL, Labels: map[string]string{balancer.LabelModel: "llama-8b"}}}); err != nil {
		b.Fatal(err)
	}
	if g.llm, err = newLLM(g.reg, g.specs, nil, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	if g.proxy, err = balancer.NewProxy(g.pool, balancer.WithTransport(&http.Transport{MaxIdleConnsPerHost: 256}), balancer.WithSetModel(setModel),
		balancer.WithFallback(balancer.Fallback{Chains: map[string][]string{"llama-8b": {"hosted"}}, Timeout: 20 * time.Second})); err != nil {
		b.Fatal(err)
	}
	g.fleet = newFleet(g.pool, g.specs, lane)
	closers = append(closers, g.fleet.Close)
	g.hold = &holder{fleet: g.fleet, pool: g.pool, lane: lane, timeout: time.Second, next: g.proxy}
	src, err := luabind.FromFS(autoscale.Policies(), "policies/llm_cost.lua")
	if err != nil {
		b.Fatal(err)
	}
	if g.access, err = luabind.New(src, luabind.WithConfig(policyConfig(g.specs, config{}))); err != nil {
		b.Fatal(err)
	}
	closers = append(closers, func() { g.access.Close() })
	if g.adm, err = middleware.NewAdmission(middleware.AdmissionConfig{}); err != nil {
		b.Fatal(err)
	}
	// The economy lane of llama-70b goes to llama-8b: every request is re-routed.
	if err := g.adm.Route("llama-70b"+lane, "llama-8b", 1); err != nil {
		b.Fatal(err)
	}
	front, err := frontend(g, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	gwSrv := httptest.NewServer(front)
	closers = append(closers, gwSrv.Close)
	// The balancer's proxy alone, routing by model (from a header here) with the chain.
	only, err := balancer.NewProxy(g.pool, balancer.WithTransport(&http.Transport{MaxIdleConnsPerHost: 256}),
		balancer.WithModel(func(*http.Request) string { return "llama-8b" }),
		balancer.WithFallback(balancer.Fallback{Chains: map[string][]string{"llama-8b": {"hosted"}}, Timeout: 20 * time.Second}))
	if err != nil {
		b.Fatal(err)
	}
	onlySrv := httptest.NewServer(only)
	closers = append(closers, onlySrv.Close)

	s.gw, s.bare, s.only = gwSrv.URL, bareSrv.URL, onlySrv.URL
	return s
}

// BenchmarkGatewayVsBareProxy measures, in one run, the throughput of the demo's whole
// request path (classification, llm_cost's on_request in Lua, admission with a route
// rule, the model windows, the cold-start holder, the balancer's proxy routing by model
// with a fallback chain) and of a bare httputil.ReverseProxy with a buffer pool, both
// over loopback to the same simulated model server (instant: no prefill or decode
// time), with short non-streamed chat requests from the same client. Rounds alternate
// between them so that drift on a shared machine hits both; the figures are medians
// over rounds. "ratio" is gateway/bare throughput; "cpu-ratio" is gateway/bare requests
// per CPU-second of the whole process (client, gateway and model server alike).
// "proxy-only" is the balancer's proxy alone (model routing and the fallback chain,
// without the LLM layer, the middleware and Lua).
//
//	go test -run '^$' -bench GatewayVsBareProxy -benchtime 1x ./examples/llmgateway
func BenchmarkGatewayVsBareProxy(b *testing.B) {
	s := newBenchServers(b)
	defer s.close()
	const conc = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	body := []byte(`{"model":"llama-70b","max_tokens":8,"messages":[{"role":"user","content":"Say hi."}]}`)
	load := func(target string, d time.Duration) (float64, float64) {
		return proxybench.Load(b, client, conc, d, func(w int) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, target+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(middleware.TenantHeader, []string{"acme", "globex", "batchco"}[w%3])
			req.Header.Set(priorityHeader, "0")
			return req
		})
	}
	median := proxybench.Median
	for b.Loop() {
		load(s.gw, 300*time.Millisecond) // warm up both
		load(s.bare, 300*time.Millisecond)
		var gw, br, on, gwCPU, brCPU, onCPU []float64
		for range 9 {
			r, c := load(s.gw, 700*time.Millisecond)
			gw, gwCPU = append(gw, r), append(gwCPU, c)
			r, c = load(s.bare, 700*time.Millisecond)
			br, brCPU = append(br, r), append(brCPU, c)
			r, c = load(s.only, 700*time.Millisecond)
			on, onCPU = append(on, r), append(onCPU, c)
		}
		g, r := median(gw), median(br)
		b.ReportMetric(g, "gateway-req/s")
		b.ReportMetric(r, "bare-req/s")
		b.ReportMetric(g/r, "ratio")
		b.ReportMetric(median(gwCPU)/median(brCPU), "cpu-ratio")
		b.ReportMetric(median(on)/r, "proxy-only-ratio")
		b.ReportMetric(median(onCPU)/median(brCPU), "proxy-only-cpu-ratio")
	}
}

// BenchmarkPerRequest sends b.N short non-streamed chat requests, from 32 clients,
// through one of BenchmarkGatewayVsBareProxy's servers, so that each path can be
// profiled on its own and compared per request (pprof -diff_base, or callgrind with
// GODEBUG=asyncpreemptoff=1): the gateway, the bare reverse proxy and the balancer's
// proxy alone. allocs/op counts the whole process: client, server and model server.
//
//	go test -run '^$' -bench 'PerRequest/gateway' -benchtime 20000x -cpuprofile gw.pprof ./examples/llmgateway
func BenchmarkPerRequest(b *testing.B) {
	s := newBenchServers(b)
	defer s.close()
	for _, t := range []struct{ name, url string }{{"gateway", s.gw}, {"bare", s.bare}, {"proxy-only", s.only}} {
		b.Run(t.name, func(b *testing.B) {
			const conc = 32
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
			defer client.CloseIdleConnections()
			body := []byte(`{"model":"llama-70b","max_tokens":8,"messages":[{"role":"user","content":"Say hi."}]}`)
			do := func(w int) {
				req, _ := http.NewRequest(http.MethodPost, t.url+"/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(middleware.TenantHeader, []string{"acme", "globex", "batchco"}[w%3])
				req.Header.Set(priorityHeader, "0")
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
				}
			}
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			for w := range conc {
				wg.Go(func() {
					for n.Add(1) <= int64(b.N) {
						do(w)
					}
				})
			}
			wg.Wait()
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing: the in-process benchmark's
// client side.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkFrontendInProcess is the demo's request path without the network: the LLM
// layer, the classifier, llm_cost's on_request, admission with the economy-lane route
// rule, the windows and the holder, in front of a handler that reads the body (without
// closing it, as httputil.ReverseProxy's Transport side does) and answers a short chat
// completion with usage. It is the CPU the gateway adds per request on top of a proxy,
// which BenchmarkGatewayVsBareProxy sees as the gap between its ratio and
// proxy-only-ratio.
//
//	go test -run '^$' -bench FrontendInProcess -benchmem ./examples/llmgateway
func BenchmarkFrontendInProcess(b *testing.B) {
	answer := []byte(`{"id":"c1","object":"chat.completion","model":"llama-8b","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`)
	var served int
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		if err := setModel(r, "llama-8b"); err != nil {
			b.Error(err)
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(answer)
	})
	spec := &modelSpec{name: "llama-8b", batch: 1024, queue: 1024, kvTokens: 1 << 30}
	g := &gateway{specs: []*modelSpec{{name: "llama-70b", cheaper: "llama-8b", batch: 8, kvTokens: 8000}, spec}}
	var err error
	if g.reg, err = metrics.NewRegistry(); err != nil {
		b.Fatal(err)
	}
	if g.pool, err = balancer.New(balancer.WithRegistry(g.reg), balancer.WithWindowConcurrency()); err != nil {
		b.Fatal(err)
	}
	if g.llm, err = newLLM(g.reg, g.specs, nil, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	g.fleet = newFleet(g.pool, g.specs, lane)
	defer g.fleet.Close()
	g.hold = &holder{fleet: g.fleet, pool: g.pool, lane: lane, timeout: time.Second, next: upstream}
	src, err := luabind.FromFS(autoscale.Policies(), "policies/llm_cost.lua")
	if err != nil {
		b.Fatal(err)
	}
	if g.access, err = luabind.New(src, luabind.WithConfig(policyConfig(g.specs, config{}))); err != nil {
		b.Fatal(err)
	}
	defer g.access.Close()
	if g.adm, err = middleware.NewAdmission(middleware.AdmissionConfig{}); err != nil {
		b.Fatal(err)
	}
	if err := g.adm.Route("llama-70b"+lane, "llama-8b", 1); err != nil {
		b.Fatal(err)
	}
	front, err := frontend(g, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"model":"llama-70b","max_tokens":8,"messages":[{"role":"user","content":"Say hi."}]}`)
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(middleware.TenantHeader, "acme")
	req.Header.Set(priorityHeader, "0")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r := *req
		r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
		clear(w.h)
		front.ServeHTTP(w, &r)
	}
	if served == 0 || int(g.llm.Stats().Requests) != served {
		b.Fatalf("the upstream served %d requests of the gateway's %d", served, g.llm.Stats().Requests)
	}
}
