package autoscale_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// historyBound is the documented bound on the memory of a full default history
// (DefaultHistory decisions) of a policy aggregating 1,000 windows: the decisions keep
// a record of each whole-scope read, not its figures, and at most MaxRecordedReads key
// reads per tick (see MaxRecordedReads).
const historyBound = 16 << 20

// TestHistoryMemory records 1,024 decisions of a policy that aggregates 1,000 windows
// (and reads more keys than a tick's record keeps) and checks that the heap the
// history holds, after a collection, stays under historyBound.
func TestHistoryMemory(t *testing.T) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock), metrics.WithCapacity(2000))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("backend-%04d", i)
		reg.Window(metrics.ScopeBackend, keys[i]).RecordAt(t0, metrics.Observation{Latency: time.Millisecond})
	}
	policy := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		var sum float64
		for _, s := range in.Metrics.Scope(metrics.ScopeBackend, 0) {
			sum += s.Rate
		}
		for _, k := range keys[:100] { // key reads too, past the record's limit
			in.Metrics.Snapshot(metrics.ScopeBackend, k, 10*time.Second)
		}
		return []autoscale.Action{autoscale.Scale{Target: "web", Replicas: 1 + int(sum)%5}}, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clock), autoscale.WithDryRun(true),
		autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 10, Actuator: nopActuator{}}))

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// A first tick makes what the windows keep for their readers (see metrics'
	// readCache, about 17 KB a window), which is not the history's.
	clock.Advance(time.Second)
	if _, err := l.Step(context.Background(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	before := heap()
	for range autoscale.DefaultHistory {
		clock.Advance(time.Second)
		if _, err := l.Step(context.Background(), clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	ds := l.Decisions()
	if len(ds) != autoscale.DefaultHistory || len(ds[0].ScopeInputs) != 1 || ds[0].ScopeInputs[0].Windows != 1000 ||
		len(ds[0].Inputs) != autoscale.MaxRecordedReads {
		t.Fatalf("%d decisions; the first read %+v and %d keys", len(ds), ds[0].ScopeInputs, len(ds[0].Inputs))
	}
	grown := int64(after) - int64(before)
	t.Logf("history of %d decisions over 1,000 windows: %.1f MB (bound %d MB)", len(ds), float64(grown)/(1<<20), historyBound>>20)
	if grown > historyBound {
		t.Errorf("the history holds %d bytes, more than the bound %d", grown, historyBound)
	}
	runtime.KeepAlive(l)
}
