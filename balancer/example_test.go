package balancer_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// A pool with nginx's smooth weighted round robin; Pick and Done around each request.
func Example() {
	pool, err := balancer.New(
		balancer.WithAlgorithm(&balancer.SmoothWeighted{}),
		balancer.WithClock(metrics.NewManualClock(time.Unix(0, 0))),
		balancer.WithRand(rand.NewPCG(1, 2)), // one goroutine only
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = pool.Update([]balancer.Endpoint{
		{ID: "a", URL: "http://10.0.0.1:8080", Weight: 3},
		{ID: "b", URL: "http://10.0.0.2:8080", Labels: map[string]string{"zone": "eu-west-1b"}},
		{ID: "c", URL: "http://10.0.0.3:8080"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	req := &balancer.Request{}
	for range 10 {
		r, err := pool.Pick(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Print(r.Backend.ID(), " ")
		r.Done(balancer.Outcome{Latency: 12 * time.Millisecond, Status: http.StatusOK})
	}
	fmt.Println()
	// Output:
	// b a c a a b a c a a
}

// The scaling loop drains and ejects backends through SetWeight and Eject.
func ExamplePool_SetWeight() {
	clock := metrics.NewManualClock(time.Unix(0, 0))
	pool, _ := balancer.New(balancer.WithClock(clock), balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 50}))
	_ = pool.Update([]balancer.Endpoint{
		{ID: "a", URL: "http://10.0.0.1"}, {ID: "b", URL: "http://10.0.0.2"},
		{ID: "c", URL: "http://10.0.0.3"}, {ID: "d", URL: "http://10.0.0.4"},
	})
	fmt.Println(pool.SetWeight("a", 0)) // drain
	fmt.Println(pool.SetWeight("b", -1))
	fmt.Println(pool.Eject("c", 30*time.Second))
	fmt.Println(pool.Ready())
	clock.Advance(30 * time.Second)
	r, _ := pool.Pick(nil)
	r.Done(balancer.Outcome{Status: 200}) // the first Done after 30 s ends the ejection
	fmt.Println(pool.Ready())
	// Output:
	// <nil>
	// balancer: invalid weight: "b": -1 out of [0, 1000000]
	// <nil>
	// [b d]
	// [b c d]
}

// A proxy in front of a pool: picks, proxies, records, retries.
func ExampleProxy() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s, forwarded for %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()

	pool, _ := balancer.New(balancer.WithAlgorithm(&balancer.PeakEWMA{}))
	if err := pool.Update([]balancer.Endpoint{{ID: "app-1", URL: backend.URL + "/app"}}); err != nil {
		fmt.Println(err)
		return
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithKey(balancer.HeaderKey("X-Tenant")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer proxy.CloseIdleConnections()
	front := httptest.NewServer(proxy)
	defer front.Close()

	res, err := http.Get(front.URL + "/users")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode, string(body))
	b, _ := pool.Lookup("app-1")
	fmt.Println("requests recorded:", b.Window().Snapshot(0).Count)
	// Output:
	// 200 hello from /app/users, forwarded for 127.0.0.1
	// requests recorded: 1
}

// Scoring routes requests that share a prompt prefix to the backend that served it,
// unless that backend is saturated or too loaded; its weights change at run time.
func ExampleScoring() {
	scoring, err := balancer.NewScoring(balancer.ScoringConfig{BlockSize: 16})
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, _ := balancer.New(
		balancer.WithAlgorithm(scoring),
		balancer.WithClock(metrics.NewManualClock(time.Unix(0, 0))),
		balancer.WithRand(rand.NewPCG(1, 2)), // one goroutine only
	)
	_ = pool.Update([]balancer.Endpoint{
		{ID: "a", URL: "http://10.0.0.1:8000"}, {ID: "b", URL: "http://10.0.0.2:8000"},
		{ID: "c", URL: "http://10.0.0.3:8000"},
	})
	pick := func(prompt string) string {
		r, err := pool.Pick(&balancer.Request{Prompt: prompt})
		if err != nil {
			return err.Error()
		}
		r.Done(balancer.Outcome{Status: http.StatusOK})
		return r.Backend.ID()
	}
	const system = "You are a terse assistant. Answer in one line. "
	first := pick(system + "What is 2+2?")
	fmt.Println(pick(system+"Name a prime.") == first, pick(system+"Spell cat.") == first)

	// The affine backend reports a long queue (from a scraper or a health check):
	// it is saturated, and the prefix goes elsewhere.
	_ = pool.ReportLoad(first, balancer.LoadReport{Queue: 40}, 0)
	fmt.Println(pick(system+"Name a colour.") == first)

	fmt.Println(scoring.SetWeights(balancer.Weights{Queue: -1}))
	// Output:
	// true true
	// false
	// balancer: invalid config: weight queue -1: must be finite and not negative
}
