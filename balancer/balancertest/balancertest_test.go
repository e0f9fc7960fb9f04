package balancertest_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/balancertest"
	"github.com/autoscalelua/autoscalelua/metrics"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerWithClock(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(0, 0))
	s := balancertest.NewServer(t, "a", balancertest.WithClock(clock))
	s.Set(20*time.Millisecond, http.StatusTeapot)
	res, err := s.Client().Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusTeapot || string(body) != "a" || res.Header.Get("X-Backend") != "a" {
		t.Errorf("got %d %q %q", res.StatusCode, body, res.Header.Get("X-Backend"))
	}
	if got := clock.Now(); !got.Equal(time.Unix(0, 0).Add(20 * time.Millisecond)) {
		t.Errorf("clock at %v, want +20ms", got)
	}
	if s.Hits() != 1 {
		t.Errorf("hits = %d", s.Hits())
	}
}

func TestNewPoolIsDeterministic(t *testing.T) {
	seq := func() []string {
		p := balancertest.NewPool(t, balancertest.Endpoints(5), balancer.WithAlgorithm(balancer.Random{}))
		var out []string
		for range 10 {
			r, err := p.Pick(nil)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Backend.ID())
			r.Done(balancer.Outcome{Status: 200})
		}
		return out
	}
	a, b := seq(), seq()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("two pools with the same seed picked %v and %v", a, b)
		}
	}
}
