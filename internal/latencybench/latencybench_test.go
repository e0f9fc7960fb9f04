package latencybench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunSeesAddedLatency drives a server that sleeps 3 ms and one that does not, and
// finds the difference at the median, with every request counted.
func TestRunSeesAddedLatency(t *testing.T) {
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer fast.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		time.Sleep(3 * time.Millisecond)
	}))
	defer slow.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	defer client.CloseIdleConnections()
	rs, err := Run(Config{Rates: []int{100}, Round: 300 * time.Millisecond, Rounds: 2, Client: client},
		Server{Name: "slow", Targets: []vegeta.Target{
			{Method: "GET", URL: slow.URL},
			{Method: "GET", URL: slow.URL},
			{Method: "GET", URL: slow.URL},
			{Method: "GET", URL: slow.URL, Header: http.Header{"X-Fail": {"1"}}},
		}},
		Server{Name: "fast", Targets: []vegeta.Target{{Method: "GET", URL: fast.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	ps := Pairs(rs, "slow", "fast")
	if len(rs) != 2 || len(ps) != 1 {
		t.Fatalf("results %+v, pairs %+v", rs, ps)
	}
	s, f := ps[0].Subject, ps[0].Base
	// 100 rps for 2 × 0.3 s: 60 requests, give or take the pacer's edges.
	for _, r := range []Result{s, f} {
		if r.Sent < 50 || r.Sent > 70 || r.Achieved < 80 || r.Achieved > 120 {
			t.Errorf("%s: sent %d at %.0f rps, want about 60 at 100", r.Server, r.Sent, r.Achieved)
		}
		if !(r.P50 <= r.P99 && r.P99 <= r.P999 && r.P50 > 0) {
			t.Errorf("%s: quantiles out of order: %v %v %v", r.Server, r.P50, r.P99, r.P999)
		}
	}
	if f.Errors != 0 || s.Errors < s.Sent/4-2 || s.Errors > s.Sent/4+2 {
		t.Errorf("errors: fast %d of %d, slow %d of %d (a quarter fail)", f.Errors, f.Sent, s.Errors, s.Sent)
	}
	// Three quarters of the slow server's requests sleep 3 ms, so its median does.
	if d := s.P50 - f.P50; d < 2*time.Millisecond {
		t.Errorf("slow p50 %v, fast p50 %v: difference under 2 ms", s.P50, f.P50)
	}
	if len(s.PerRound) != 2 || len(f.PerRound) != 2 {
		t.Errorf("rounds: slow %d, fast %d, want 2", len(s.PerRound), len(f.PerRound))
	}
	if a50, _, _ := ps[0].Added(); a50 < 2*time.Millisecond {
		t.Errorf("added p50 %v, want at least 2 ms", a50)
	}
	var b bytes.Buffer
	WriteTable(&b, rs, "slow", "fast")
	if lines := strings.Count(b.String(), "\n"); lines != 3 || !strings.Contains(b.String(), "| 100 |") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestRunRejectsEmpty(t *testing.T) {
	if _, err := Run(Config{Rates: []int{100}}); err == nil {
		t.Error("no servers: no error")
	}
	if _, err := Run(Config{Rates: []int{0}}, Server{Name: "x", Targets: []vegeta.Target{{Method: "GET", URL: "http://127.0.0.1:1"}}}); err == nil {
		t.Error("rate 0: no error")
	}
}

func TestAddedIsMedianOfPairedRounds(t *testing.T) {
	ms := func(x int) time.Duration { return time.Duration(x) * time.Millisecond }
	r := func(xs ...int) (q [][3]time.Duration) {
		for _, x := range xs {
			q = append(q, [3]time.Duration{ms(x), ms(10 * x), ms(100 * x)})
		}
		return q
	}
	// Round 2 of the subject was hit by a burst; the median of differences ignores it.
	p := Pair{Subject: Result{PerRound: r(3, 50, 4)}, Base: Result{PerRound: r(2, 2, 3)}}
	if a50, a99, a999 := p.Added(); a50 != ms(1) || a99 != ms(10) || a999 != ms(100) {
		t.Errorf("Added = %v %v %v, want 1ms 10ms 100ms", a50, a99, a999)
	}
	p = Pair{Subject: Result{PerRound: r(3, 5)}, Base: Result{PerRound: r(2, 2)}}
	if a50, _, _ := p.Added(); a50 != ms(2) {
		t.Errorf("Added p50 over two rounds = %v, want the mean of 1 and 3 ms", a50)
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]time.Duration, 1000)
	for i := range xs {
		xs[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := quantile(xs, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestParseWrk(t *testing.T) {
	ok := "Running 1s test @ http://127.0.0.1:1\n  2 threads and 8 connections\n  12000 requests in 1.00s, 1.2MB read\nRequests/sec:  11990.42\nTransfer/sec:      1.2MB\n"
	if r, err := parseWrk([]byte(ok)); err != nil || r != 11990.42 {
		t.Errorf("parseWrk = %v, %v", r, err)
	}
	for _, bad := range []string{
		ok + "  Non-2xx or 3xx responses: 3\n",
		"  Socket errors: connect 0, read 1, write 0, timeout 0\n" + ok,
		"nothing",
	} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("parseWrk(%q): no error", bad)
		}
	}
}

// TestWrk runs the real wrk, as scripts/bench.sh does, for a second, and checks the
// headers its script sends.
func TestWrk(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		testenv.Missing(t, "wrk", "apt-get install wrk")
	}
	seen := make(chan string, 1<<16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Get("X-Tenant-ID"):
		default:
		}
	}))
	defer srv.Close()
	// One connection for a second: wrk runs flat out, and the suite's other packages
	// share the machine.
	rs, err := Wrk(context.Background(), WrkConfig{Threads: 1, Connections: 1, Round: time.Second, Rounds: 1,
		Headers: []map[string]string{{"X-Tenant-ID": "acme"}, {"X-Tenant-ID": "free"}}},
		[]string{"a"}, map[string]string{"a": srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].PerSecond <= 0 || len(rs[0].Rounds) != 1 {
		t.Fatalf("results %+v", rs)
	}
	close(seen)
	tenants := map[string]int{}
	for h := range seen {
		tenants[h]++
	}
	if tenants["acme"] == 0 || tenants["free"] == 0 || len(tenants) != 2 {
		t.Errorf("tenants seen %v, want acme and free only", tenants)
	}
}
