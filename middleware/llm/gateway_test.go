package llm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// rig is a gateway in front of a test upstream, both on loopback.
type rig struct {
	gw  *Gateway
	reg *metrics.Registry
	up  *upstream
	url string
	fs  *httptest.Server
	// handlers counts the gateway's handlers running: a client can read a whole
	// response before its handler has returned and recorded it.
	handlers sync.WaitGroup
}

// close closes the gateway's server, waiting for its handlers to return.
func (rg *rig) close() { rg.fs.Close() }

func newRig(t *testing.T, cfg Config, opts ...Option) *rig {
	t.Helper()
	up := &upstream{in: 30, out: 7, chunks: 7}
	us := httptest.NewServer(up)
	t.Cleanup(us.Close)
	target, _ := url.Parse(us.URL)
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }, ErrorLog: log.New(io.Discard, "", 0)}
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, append([]Option{WithRegistry(reg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	reg = gw.Registry()
	inner := mustWrap(t, proxy, middleware.WithRegistry(reg), middleware.WithClassifier(Classifier(nil)))
	rg := &rig{gw: gw, reg: reg, up: up}
	h := gw.Wrap(inner)
	rg.fs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rg.handlers.Add(1)
		defer rg.handlers.Done()
		h.ServeHTTP(w, r)
	}))
	rg.url = rg.fs.URL
	t.Cleanup(rg.fs.Close)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return rg
}

func (rg *rig) post(t *testing.T, path, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", rg.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatal(err)
	}
	return resp, b
}

func (rg *rig) value(scope metrics.Scope, key string) float64 {
	rg.handlers.Wait()
	w, ok := rg.reg.Lookup(scope, key)
	if !ok {
		return -1
	}
	return w.Snapshot(0).Value
}

func (rg *rig) count(scope metrics.Scope, key string) uint64 {
	rg.handlers.Wait()
	w, ok := rg.reg.Lookup(scope, key)
	if !ok {
		return 0
	}
	return w.Snapshot(0).Count
}

// rejected is the count of rejected requests in scope's window of key.
func (rg *rig) rejected(scope metrics.Scope, key string) uint64 {
	rg.handlers.Wait()
	w, ok := rg.reg.Lookup(scope, key)
	if !ok {
		return 0
	}
	return w.Snapshot(0).Rejected
}

const chatBody = `{"model":"small","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello to the gateway, please."}],"user":"acme"}`

func TestGatewayRestoresBodyByteForByte(t *testing.T) {
	rg := newRig(t, Config{})
	// Odd spacing, escapes and key order must all reach the upstream as sent.
	body := "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"caf\\u00e9 \\n \\\"q\\\"\"} ],\n\t\"model\":\"small\" , \"extra\":{\"a\":[1,2.5e3,null]} }"
	resp, _ := rg.post(t, "/v1/chat/completions", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := rg.up.body(); !bytes.Equal(got, []byte(body)) {
		t.Errorf("upstream got %q, want %q", got, body)
	}
}

func TestGatewayRecordsUsage(t *testing.T) {
	tests := []struct {
		name, path, body string
		in, out          float64
	}{
		{"chat", "/v1/chat/completions", chatBody, 30, 7},
		{"chat stream", "/v1/chat/completions", strings.Replace(chatBody, `"user":"acme"`, `"stream":true,"stream_options":{"include_usage":true},"user":"acme"`, 1), 30, 7},
		{"completions", "/v1/completions", `{"model":"small","prompt":"Once upon a time","user":"acme"}`, 30, 7},
		{"embeddings", "/v1/embeddings", `{"model":"small","input":["a","b"],"user":"acme"}`, 30, 0},
		{"messages", "/v1/messages", `{"model":"small","max_tokens":100,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"acme"}}`, 30, 7},
		{"messages stream", "/v1/messages", `{"model":"small","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"acme"}}`, 30, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rg := newRig(t, Config{})
			if tt.name == "embeddings" {
				rg.up.out = 0
			}
			resp, b := rg.post(t, tt.path, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			got := map[string]float64{
				"in": rg.value(ScopeInputTokens, "small"), "out": rg.value(ScopeOutputTokens, "small"),
				"tenant in": rg.value(ScopeTenantInputTokens, "acme"), "tenant out": rg.value(ScopeTenantOutputTokens, "acme"),
				"model window": rg.value(metrics.ScopeModel, "small"), "tenant window": rg.value(metrics.ScopeTenant, "acme"),
			}
			want := map[string]float64{"in": tt.in, "out": tt.out, "tenant in": tt.in, "tenant out": tt.out,
				"model window": tt.in + tt.out, "tenant window": tt.in + tt.out}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("windows (-want +got)\n%s", d)
			}
			if rg.count(ScopeTTFT, "small") != 1 || rg.count(ScopeTenantTTFT, "acme") != 1 {
				t.Errorf("ttft not recorded per model and tenant")
			}
			if strings.Contains(tt.name, "stream") && rg.count(ScopeTPOT, "small") != 1 {
				t.Errorf("tpot not recorded")
			}
		})
	}
}

// TestGatewayStreamsWithoutBuffering: the upstream sends a stream's first event and
// then waits until the client has read it. A gateway that held the stream back would
// never let the client see it, and the test would time out.
func TestGatewayStreamsWithoutBuffering(t *testing.T) {
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		t.Run(path, func(t *testing.T) {
			rg := newRig(t, Config{})
			gate := make(chan struct{})
			rg.up.gate = gate
			body := `{"model":"small","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", rg.url+path, strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				close(gate)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			sawContent := false
			for !sawContent {
				line, err := br.ReadString('\n')
				if err != nil {
					close(gate)
					t.Fatalf("stream ended before its first content event reached the client: %v", err)
				}
				sawContent = strings.Contains(line, "tok0")
			}
			close(gate) // only now may the upstream go on
			rest, _ := io.ReadAll(br)
			if !strings.Contains(string(rest), "tok6") {
				t.Errorf("rest of the stream missing: %q", rest)
			}
		})
	}
}

// apiErr is an error body in OpenAI's shape.
type apiErr struct {
	Error struct {
		Message, Type string
		Code          *string
	}
}

func TestGatewayBadInput(t *testing.T) {
	models, err := NewModels(Model{Name: "small", ContextWindow: 100})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed", `{"model":`, 400, "invalid_json"},
		{"not utf-8", "{\"model\":\"small\",\"messages\":[{\"content\":\"\xc3\x28\"}]}", 400, "invalid_json"},
		{"no model", `{"messages":[{"content":"x"}]}`, 400, "missing_model"},
		{"unknown model", `{"model":"nope","messages":[{"content":"x"}]}`, 404, "model_not_found"},
		{"empty messages", `{"model":"small","messages":[]}`, 400, "empty_messages"},
		{"wrong type", `{"model":"small","messages":[{"content":"x"}],"max_tokens":"many"}`, 400, "invalid_type"},
		{"over the cap", `{"model":"small","messages":[{"content":"` + strings.Repeat("x", 2000) + `"}]}`, 413, "request_too_large"},
		{"context exceeded", `{"model":"small","max_tokens":99,"messages":[{"content":"hello there"}]}`, 400, "context_length_exceeded"},
	}
	rg := newRig(t, Config{MaxBodyBytes: 1024, RejectUnknownModels: true}, WithModels(models))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := rg.post(t, "/v1/chat/completions", tt.body)
			var e apiErr
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("body %q is not an OpenAI error: %v", b, err)
			}
			if resp.StatusCode != tt.status || e.Error.Code == nil || *e.Error.Code != tt.code || e.Error.Message == "" {
				t.Errorf("status %d body %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	if s := rg.gw.Stats(); s.TooLarge != 1 || s.Malformed != 5 || s.UnknownModel != 1 || s.GuardRefused != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestGatewayContextGuard(t *testing.T) {
	models, err := NewModels(
		Model{Name: "small", ContextWindow: 100, Overflow: "large"},
		Model{Name: "large", ContextWindow: 10000},
	)
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, Config{}, WithModels(models))
	big := `{"model":"small","max_tokens":90,"messages":[{"role":"user","content":"a prompt of some length that fills what is left"}]}`
	resp, b := rg.post(t, "/v1/chat/completions", big)
	if resp.StatusCode != 200 || resp.Header.Get(RoutedHeader) != "large" {
		t.Fatalf("status %d routed %q: %s", resp.StatusCode, resp.Header.Get(RoutedHeader), b)
	}
	if want := strings.Replace(big, `"small"`, `"large"`, 1); string(rg.up.body()) != want {
		t.Errorf("upstream got %s, want %s", rg.up.body(), want)
	}
	if rg.count(ScopeInputTokens, "large") != 1 {
		t.Errorf("not recorded under the model it went to")
	}
	if err := rg.gw.SetGuard(GuardRefuse); err != nil {
		t.Fatal(err)
	}
	if resp, b := rg.post(t, "/v1/chat/completions", big); resp.StatusCode != 400 || !strings.Contains(string(b), "context_length_exceeded") {
		t.Errorf("refuse: status %d %s", resp.StatusCode, b)
	}
	rg.gw.SetGuard(GuardOff)
	if resp, _ := rg.post(t, "/v1/chat/completions", big); resp.StatusCode != 200 || resp.Header.Get(RoutedHeader) != "" {
		t.Errorf("off: status %d routed %q", resp.StatusCode, resp.Header.Get(RoutedHeader))
	}
	// Anthropic's endpoint gets Anthropic's error shape.
	rg.gw.SetGuard(GuardRefuse)
	resp, b = rg.post(t, "/v1/messages", big)
	var ae struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if json.Unmarshal(b, &ae); resp.StatusCode != 400 || ae.Type != "error" || ae.Error.Type != "invalid_request_error" {
		t.Errorf("messages: status %d %s", resp.StatusCode, b)
	}
}

func TestGatewayHook(t *testing.T) {
	models, _ := NewModels(Model{Name: "small", ContextWindow: 1000}, Model{Name: "cheap", ContextWindow: 1000})
	var seen middleware.Keys
	var seenTokens int64
	hook := func(r *http.Request, k middleware.Keys) (middleware.Keys, middleware.Verdict) {
		seen, seenTokens = k, ContextTokens(r)
		switch k.Tenant {
		case "banned":
			return k, middleware.Verdict{Status: 403, Body: "tenant banned", RetryAfter: 1500 * time.Millisecond}
		case "frugal":
			k.Model = "cheap"
		}
		return k, middleware.Verdict{}
	}
	rg := newRig(t, Config{}, WithModels(models), WithHook(hook))
	resp, b := rg.post(t, "/v1/chat/completions", chatBody, "X-Tenant-ID", "banned")
	if resp.StatusCode != 403 || resp.Header.Get("Retry-After") != "2" || !strings.Contains(string(b), "tenant banned") {
		t.Errorf("rejection: status %d retry %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if seen.Model != "small" || seen.Tenant != "banned" || seenTokens <= 0 {
		t.Errorf("hook saw %+v tokens %d", seen, seenTokens)
	}
	resp, _ = rg.post(t, "/v1/chat/completions", chatBody, "X-Tenant-ID", "frugal")
	if resp.StatusCode != 200 || !strings.Contains(string(rg.up.body()), `"model":"cheap"`) {
		t.Errorf("re-model: status %d upstream got %s", resp.StatusCode, rg.up.body())
	}
	if rg.count(ScopeInputTokens, "cheap") != 1 || rg.count(metrics.ScopeModel, "cheap") != 1 {
		t.Errorf("the re-modelled request is not recorded under its new model")
	}
}

func TestGatewayUsageFallbacks(t *testing.T) {
	tests := []struct {
		name, path, body string
		setup            func(*upstream)
		in, out          float64 // -1: the estimate (of the output: of the upstream's "Hello there, friend.")
		lied             bool
	}{
		{name: "stream without usage counts chunks", path: "/v1/chat/completions",
			body:  `{"model":"small","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.noUsage = true; u.chunks = 11 }, in: -1, out: 11},
		{name: "anthropic stream without usage", path: "/v1/messages",
			body:  `{"model":"small","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.noUsage = true; u.chunks = 5 }, in: -1, out: 5},
		{name: "json without usage estimates the output", path: "/v1/chat/completions",
			body:  `{"model":"small","messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.noUsage = true }, in: -1, out: -1},
		{name: "negative usage is not believed", path: "/v1/chat/completions",
			body:  `{"model":"small","messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.lie = `{"prompt_tokens":-5,"completion_tokens":-1}` }, in: -1, out: -1, lied: true},
		{name: "absurd output is held to max_tokens", path: "/v1/chat/completions",
			body:  `{"model":"small","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.lie = `{"prompt_tokens":9,"completion_tokens":99999999999999}` }, in: 9, out: -1, lied: true},
		{name: "output over max_tokens is held to it", path: "/v1/chat/completions",
			body:  `{"model":"small","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.lie = `{"prompt_tokens":9,"completion_tokens":500}` }, in: 9, out: 20},
		{name: "stream that breaks mid-way settles what came", path: "/v1/chat/completions",
			body:  `{"model":"small","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.chunks = 10; u.breakAt = 4 }, in: -1, out: 4},
		{name: "upstream error uses nothing", path: "/v1/chat/completions",
			body:  `{"model":"small","messages":[{"role":"user","content":"hi"}]}`,
			setup: func(u *upstream) { u.status = 500 }, in: 0, out: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rg := newRig(t, Config{})
			tt.setup(rg.up)
			rg.post(t, tt.path, tt.body)
			var q Request
			if err := Parse([]byte(tt.body), EndpointOf(tt.path), &q); err != nil {
				t.Fatal(err)
			}
			est := float64(rg.gw.Estimator().Estimate(&q))
			if tt.in < 0 {
				tt.in = est
			}
			if tt.out < 0 {
				var c counts
				scanString([]byte(`"Hello there, friend."`), 0, &c)
				tt.out = float64(rg.gw.Estimator().textTokens("small", c))
			}
			got := [2]float64{rg.value(ScopeInputTokens, "small"), rg.value(ScopeOutputTokens, "small")}
			if want := [2]float64{tt.in, tt.out}; got != want {
				t.Errorf("in, out = %v, want %v", got, want)
			}
			if s := rg.gw.Stats(); (s.Lied == 1) != tt.lied {
				t.Errorf("stats %+v, lied %v", s, tt.lied)
			}
		})
	}
}

func TestGatewayPassesOtherRequests(t *testing.T) {
	rg := newRig(t, Config{})
	resp, err := http.Get(rg.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rg.gw.Stats().Requests != 0 {
		t.Errorf("a GET was read as an LLM request")
	}
}

// mustWrap wraps h with the middleware configured by opts, failing the test on error.
func mustWrap(tb testing.TB, h http.Handler, opts ...middleware.Option) http.Handler {
	tb.Helper()
	w, err := middleware.Wrap(h, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

// After the gateway's handler returns, the request no longer reaches the pooled
// exchange (an outer middleware reading r.Body gets an empty body).
func TestGatewayLetsGoOfTheRequest(t *testing.T) {
	gw, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var during bool
	h := gw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, during = FromRequest(r)
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}))
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(chatBody))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if _, after := FromRequest(req); !during || after || req.Body != http.NoBody {
		t.Errorf("during %v, after %v, body %T", during, after, req.Body)
	}
}
