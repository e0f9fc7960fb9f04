package actuatortest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/google/go-cmp/cmp"
)

func req(name string, n int, id string) actuator.Request {
	return actuator.Request{
		Target: actuator.Target{Name: name}, Replicas: n, Previous: -1,
		DecisionID: id, Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func TestRecorder(t *testing.T) {
	ctx := context.Background()
	var r actuatortest.Recorder
	a, b := actuator.Target{Name: "a"}, actuator.Target{Name: "b"}

	if _, err := r.Replicas(ctx, a); !errors.Is(err, actuator.ErrUnknownTarget) {
		t.Fatalf("Replicas on zero Recorder = %v, want ErrUnknownTarget", err)
	}
	if _, ok := r.Last(a); ok {
		t.Fatal("Last on zero Recorder found a request")
	}
	must(t, r.Scale(ctx, req("a", 1, "1")))
	must(t, r.Scale(ctx, req("b", 2, "2")))
	must(t, r.Scale(ctx, req("a", 3, "3")))

	boom := errors.New("boom")
	r.SetErr(boom)
	if err := r.Scale(ctx, req("b", 9, "4")); !errors.Is(err, boom) {
		t.Fatalf("Scale with SetErr = %v, want boom", err)
	}
	r.SetErr(nil)

	want := []actuator.Request{req("a", 1, "1"), req("b", 2, "2"), req("a", 3, "3"), req("b", 9, "4")}
	if diff := cmp.Diff(want, r.Requests()); diff != "" {
		t.Errorf("Requests (-want +got):\n%s", diff)
	}
	if got, ok := r.Last(a); !ok || got.DecisionID != "3" {
		t.Errorf("Last(a) = %+v, %v; want decision 3", got, ok)
	}
	if got, ok := r.Last(b); !ok || got.DecisionID != "4" {
		t.Errorf("Last(b) = %+v, %v; want the failed decision 4", got, ok)
	}
	if n, err := r.Replicas(ctx, b); err != nil || n != 2 {
		t.Errorf("Replicas(b) = %d, %v; want 2 (the failed request must not count)", n, err)
	}
	r.SetReplicas(b, 11)
	if n, _ := r.Replicas(ctx, b); n != 11 {
		t.Errorf("Replicas(b) after SetReplicas = %d, want 11", n)
	}

	// Requests returns a copy.
	got := r.Requests()
	got[0].Replicas = 100
	if r.Requests()[0].Replicas != 1 {
		t.Error("Requests returned the Recorder's own slice")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Scale(cctx, req("a", 5, "5")); !errors.Is(err, context.Canceled) {
		t.Errorf("Scale(canceled) = %v, want context.Canceled", err)
	}

	r.Reset()
	if len(r.Requests()) != 0 {
		t.Error("Reset kept requests")
	}
	if _, err := r.Replicas(ctx, a); !errors.Is(err, actuator.ErrUnknownTarget) {
		t.Error("Reset kept replica counts")
	}
}

func TestRecorderConcurrent(t *testing.T) {
	var r actuatortest.Recorder
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			_ = r.Scale(context.Background(), req("a", i, fmt.Sprint(i)))
			_, _ = r.Replicas(context.Background(), actuator.Target{Name: "a"})
			_, _ = r.Last(actuator.Target{Name: "a"})
		})
	}
	wg.Wait()
	if n := len(r.Requests()); n != 16 {
		t.Errorf("recorded %d requests, want 16", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ExampleRecorder() {
	var rec actuatortest.Recorder
	scale := func(ctx context.Context, a actuator.Actuator) error { // the code under test
		return a.Scale(ctx, actuator.Request{
			Target: actuator.Target{Name: "checkout"}, Replicas: 5, Previous: 3,
			DecisionID: "d-1", Time: time.Now(),
		})
	}
	if err := scale(context.Background(), &rec); err != nil {
		fmt.Println(err)
	}
	last, ok := rec.Last(actuator.Target{Name: "checkout"})
	fmt.Println(ok, last.Replicas, len(rec.Requests()))
	// Output: true 5 1
}
