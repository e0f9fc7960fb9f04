package balancer_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// modelServer is a backend of one model whose answer can be set while it runs: a
// status, or a stall before the headers. It echoes the body it got.
type modelServer struct {
	*httptest.Server
	model  string
	status atomic.Int32
	stall  atomic.Bool
	hits   atomic.Int32
	bodies chan string
}

func newModelServer(t *testing.T, model string) *modelServer {
	m := &modelServer{model: model, bodies: make(chan string, 64)}
	m.status.Store(200)
	stop := make(chan struct{})
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		m.bodies <- string(b)
		if m.stall.Load() {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		w.Header().Set("X-Backend", model)
		if s := int(m.status.Load()); s == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(s)
		} else {
			w.WriteHeader(s)
		}
		fmt.Fprint(w, model)
	}))
	t.Cleanup(func() {
		close(stop)
		m.Close()
	})
	return m
}

type chainFixture struct {
	pool    *balancer.Pool
	proxy   *balancer.Proxy
	front   *httptest.Server
	reg     *metrics.Registry
	servers map[string]*modelServer
}

// newChain serves large → medium → hosted, one backend each.
func newChain(t *testing.T, fb balancer.Fallback) *chainFixture {
	t.Helper()
	f := &chainFixture{servers: map[string]*modelServer{}}
	var err error
	if f.reg, err = metrics.NewRegistry(); err != nil {
		t.Fatal(err)
	}
	// Cool-downs of every backend are allowed: one backend per model.
	if f.pool, err = balancer.New(balancer.WithRegistry(f.reg), balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 100})); err != nil {
		t.Fatal(err)
	}
	var eps []balancer.Endpoint
	for _, m := range []string{"large", "medium", "hosted"} {
		s := newModelServer(t, m)
		f.servers[m] = s
		eps = append(eps, balancer.Endpoint{ID: m + "-1", URL: s.URL, Labels: map[string]string{balancer.LabelModel: m}})
	}
	if err := f.pool.Update(eps); err != nil {
		t.Fatal(err)
	}
	if fb.Chains == nil {
		fb.Chains = map[string][]string{"large": {"medium", "hosted"}}
	}
	if f.proxy, err = balancer.NewProxy(f.pool, balancer.WithModel(balancer.HeaderKey("X-Model")), balancer.WithFallback(fb)); err != nil {
		t.Fatal(err)
	}
	f.front = httptest.NewServer(f.proxy)
	t.Cleanup(func() {
		f.front.Close()
		f.proxy.CloseIdleConnections()
	})
	return f
}

type answer struct {
	Status           int
	Body, Fallback   string
	Model, Upstreams string
}

func (f *chainFixture) post(t *testing.T, model, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.front.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("X-Model", model)
	res, err := f.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	// Every upstream that was sent the request got the whole body.
	var ups []string
	for _, m := range []string{"large", "medium", "hosted"} {
		s := f.servers[m]
		for len(s.bodies) > 0 {
			if got := <-s.bodies; got != body {
				t.Errorf("%s got body %q, want %q", m, got, body)
			}
			ups = append(ups, m)
		}
	}
	return answer{res.StatusCode, strings.TrimSpace(string(b)), res.Header.Get(balancer.FallbackHeader), res.Header.Get(balancer.ModelHeader), strings.Join(ups, ",")}
}

func TestFallbackChain(t *testing.T) {
	const body = `{"model":"large","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name  string
		setup func(f *chainFixture)
		want  answer
		stats balancer.FallbackStats
	}{
		{"healthy: served by the first", func(*chainFixture) {},
			answer{200, "large", "", "", "large"}, balancer.FallbackStats{}},
		{"429 moves down", func(f *chainFixture) { f.servers["large"].status.Store(429) },
			answer{200, "medium", "large=429", "medium", "large,medium"}, balancer.FallbackStats{RateLimited: 1}},
		{"5xx twice reaches the hosted provider", func(f *chainFixture) {
			f.servers["large"].status.Store(500)
			f.servers["medium"].status.Store(503)
		}, answer{200, "hosted", "large=5xx, medium=5xx", "hosted", "large,medium,hosted"}, balancer.FallbackStats{ServerErrors: 2}},
		{"timeout moves down", func(f *chainFixture) { f.servers["large"].stall.Store(true) },
			answer{200, "medium", "large=timeout", "medium", "large,medium"}, balancer.FallbackStats{Timeouts: 1}},
		{"connection refused moves down", func(f *chainFixture) { f.servers["large"].Close() },
			answer{200, "medium", "large=5xx", "medium", "medium"}, balancer.FallbackStats{ServerErrors: 1}},
		{"the last answer passes through", func(f *chainFixture) {
			for _, s := range f.servers {
				s.status.Store(500)
			}
		}, answer{500, "hosted", "large=5xx, medium=5xx", "hosted", "large,medium,hosted"}, balancer.FallbackStats{ServerErrors: 2}},
		{"no live backend is skipped without a send", func(f *chainFixture) {
			if err := f.pool.SetWeight("large-1", 0); err != nil {
				t.Fatal(err)
			}
		}, answer{200, "medium", "large=unavailable", "medium", "medium"}, balancer.FallbackStats{Unavailable: 1}},
		{"none live at all: 503", func(f *chainFixture) {
			for _, id := range []string{"large-1", "medium-1", "hosted-1"} {
				if err := f.pool.SetWeight(id, 0); err != nil {
					t.Fatal(err)
				}
			}
		}, answer{503, "Service Unavailable", "large=unavailable, medium=unavailable", "", ""}, balancer.FallbackStats{Unavailable: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newChain(t, balancer.Fallback{Timeout: 200 * time.Millisecond})
			tt.setup(f)
			if diff := cmp.Diff(tt.want, f.post(t, "large", body)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stats, f.proxy.Stats().Fallback); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFallbackCooldownAndRecord(t *testing.T) {
	f := newChain(t, balancer.Fallback{Cooldown: time.Minute})
	f.servers["large"].status.Store(429) // with Retry-After 30: the minute wins
	if got := f.post(t, "large", "x"); got.Model != "medium" {
		t.Fatalf("first: %+v", got)
	}
	if ej, until := mustLookup(t, f.pool, "large-1").Ejected(time.Now()); !ej || time.Until(until) < 50*time.Second {
		t.Errorf("large-1 ejected %v until %v, want about a minute", ej, until)
	}
	// While it cools down, large's requests skip it without a send.
	f.servers["large"].status.Store(200)
	if got := f.post(t, "large", "x"); got.Fallback != "large=unavailable" || got.Upstreams != "medium" {
		t.Errorf("during the cool-down: %+v", got)
	}
	w, ok := f.reg.Lookup(balancer.ScopeFallback, "large")
	if !ok {
		t.Fatal("no fallback window for large")
	}
	if s := w.Snapshot(0); s.Count != 2 || s.Rejected != 2 {
		t.Errorf("fallback window: count %d rejected %d, want 2 and 2", s.Count, s.Rejected)
	}
}

func mustLookup(t *testing.T, p *balancer.Pool, id string) *balancer.Backend {
	t.Helper()
	b, ok := p.Lookup(id)
	if !ok {
		t.Fatalf("no backend %s", id)
	}
	return b
}

// TestFallbackBudget: with a budget of 3 steps and no deposits, the fourth 5xx in a row
// passes through, while the 429 budget is untouched.
func TestFallbackBudget(t *testing.T) {
	f := newChain(t, balancer.Fallback{Burst: 3, Ratio: 1e-9, Cooldown: -1})
	f.servers["large"].status.Store(500)
	var got []int
	for range 5 {
		got = append(got, f.post(t, "large", "x").Status)
	}
	if diff := cmp.Diff([]int{200, 200, 200, 500, 500}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if st := f.proxy.Stats().Fallback; st.ServerErrors != 3 || st.Denied != 2 {
		t.Errorf("stats %+v, want 3 steps and 2 denied", st)
	}
	f.servers["large"].status.Store(429)
	if a := f.post(t, "large", "x"); a.Model != "medium" {
		t.Errorf("429 after the 5xx budget ran out: %+v", a)
	}
}

// TestFallbackStreamsArrive: a streamed answer from the fallback reaches the client as
// it is written.
func TestFallbackStreamsArrive(t *testing.T) {
	f := newChain(t, balancer.Fallback{})
	f.servers["large"].status.Store(503)
	release := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer sse.Close()
	if err := f.pool.Update([]balancer.Endpoint{
		{ID: "large-1", URL: f.servers["large"].URL, Labels: map[string]string{balancer.LabelModel: "large"}},
		{ID: "medium-1", URL: sse.URL, Labels: map[string]string{balancer.LabelModel: "medium"}},
	}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, f.front.URL, strings.NewReader(`{"stream":true}`))
	req.Header.Set("X-Model", "large")
	res, err := f.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, len("data: first\n\n"))
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "data: first\n\n" {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "data: [DONE]\n\n" || res.Header.Get(balancer.FallbackHeader) != "large=5xx" {
		t.Errorf("rest %q, fallback %q", rest, res.Header.Get(balancer.FallbackHeader))
	}
}

func TestFallbackValidate(t *testing.T) {
	tests := []balancer.Fallback{
		{Chains: map[string][]string{"": {"a"}}},
		{Chains: map[string][]string{"a": {"a"}}},
		{Chains: map[string][]string{"a": {""}}},
		{Timeout: -1},
		{Ratio: 2},
		{Burst: -1},
		{MaxBody: -1},
	}
	p, _ := newPool(t, 1)
	for _, fb := range tests {
		if _, err := balancer.NewProxy(p, balancer.WithFallback(fb)); !errors.Is(err, balancer.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", fb, err)
		}
	}
}

// TestFallbackBodyTooLargeGoesOnce: a body over MaxBody is sent whole, once, and the
// failure passes through.
func TestFallbackBodyTooLargeGoesOnce(t *testing.T) {
	f := newChain(t, balancer.Fallback{MaxBody: 4})
	f.servers["large"].status.Store(429)
	if diff := cmp.Diff(answer{429, "large", "", "", "large"}, f.post(t, "large", "0123456789")); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
}

// TestSetModelRewritesEachStep: with WithSetModel each step's backend gets a body
// naming its own model.
func TestSetModelRewritesEachStep(t *testing.T) {
	var mu sync.Mutex
	orig := map[*http.Request]string{}
	setModel := func(r *http.Request, model string) error {
		mu.Lock()
		defer mu.Unlock()
		b, ok := orig[r]
		if !ok {
			raw, err := io.ReadAll(r.Body)
			if err != nil {
				return err
			}
			b = string(raw)
			orig[r] = b
		}
		nb := strings.Replace(b, `"model":"large"`, fmt.Sprintf("%q:%q", "model", model), 1)
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(nb)), int64(len(nb))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(nb)), nil }
		return nil
	}
	f := newChain(t, balancer.Fallback{})
	px, err := balancer.NewProxy(f.pool, balancer.WithModel(balancer.HeaderKey("X-Model")), balancer.WithSetModel(setModel),
		balancer.WithFallback(balancer.Fallback{Chains: map[string][]string{"large": {"medium", "hosted"}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer px.CloseIdleConnections()
	front := httptest.NewServer(px)
	defer front.Close()
	f.servers["large"].status.Store(500)
	f.servers["medium"].status.Store(429)
	req, _ := http.NewRequest(http.MethodPost, front.URL, strings.NewReader(`{"model":"large","x":1}`))
	req.Header.Set("X-Model", "large")
	res, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	got := map[string]string{}
	for m, s := range f.servers {
		got[m] = <-s.bodies
	}
	want := map[string]string{"large": `{"model":"large","x":1}`, "medium": `{"model":"medium","x":1}`, "hosted": `{"model":"hosted","x":1}`}
	if diff := cmp.Diff(want, got); diff != "" || res.StatusCode != 200 {
		t.Errorf("status %d, bodies (-want +got):\n%s", res.StatusCode, diff)
	}
}
