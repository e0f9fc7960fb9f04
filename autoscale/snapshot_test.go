package autoscale_test

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// keyedReader hides a reader's Scope method, and lists a key without a window.
type keyedReader struct{ r autoscale.Reader }

func (k keyedReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	return k.r.Snapshot(scope, key, span)
}

func (k keyedReader) Keys(scope metrics.Scope) []string {
	return append(k.r.Keys(scope), "gone")
}

// countingReader counts the reads that reach it.
type countingReader struct {
	r                 autoscale.Reader
	snapshots, listed int
}

func (c *countingReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	c.snapshots++
	return c.r.Snapshot(scope, key, span)
}

func (c *countingReader) Keys(scope metrics.Scope) []string {
	c.listed++
	return c.r.Keys(scope)
}

// backends returns a registry with backend windows a (30 requests), b (10) and c (20).
func backends(t *testing.T) (*metrics.Registry, *metrics.ManualClock) {
	t.Helper()
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"b", "c", "a"} {
		w := reg.Window(metrics.ScopeBackend, k)
		for j := range 10 * (i + 1) {
			w.RecordAt(t0.Add(time.Duration(j)*100*time.Millisecond), metrics.Observation{Latency: time.Duration(j+1) * time.Millisecond})
		}
	}
	return reg, clock
}

// TestSnapshotScope checks that a scope read in one pass, through a RegistryReader's
// Scope or key by key through any Reader, yields in key order what Snapshot returns for
// each key, and stops when asked.
func TestSnapshotScope(t *testing.T) {
	reg, _ := backends(t)
	now := t0.Add(5 * time.Second)
	rr := autoscale.NewRegistryReader(reg, now)
	for _, span := range []time.Duration{0, 2 * time.Second} {
		var want []autoscale.Read
		for _, k := range []string{"a", "b", "c"} {
			s, ok := rr.Snapshot(metrics.ScopeBackend, k, span)
			want = append(want, autoscale.Read{Scope: metrics.ScopeBackend, Key: k, Span: span, Found: ok, Snapshot: s})
		}
		for name, r := range map[string]autoscale.Reader{"registry": rr, "keyed": keyedReader{rr}} {
			snap := autoscale.NewSnapshot(now, r)
			var got []autoscale.Read
			for k, s := range snap.Scope(metrics.ScopeBackend, span) {
				got = append(got, autoscale.Read{Scope: metrics.ScopeBackend, Key: k, Span: span, Found: true, Snapshot: s})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s reader, span %v (-Snapshot +Scope):\n%s", name, span, diff)
			}
			n := 0
			for range snap.Scope(metrics.ScopeBackend, span) {
				n++
				break
			}
			if n != 1 {
				t.Errorf("%s reader yielded %d after a break", name, n)
			}
		}
	}
	for k := range autoscale.NewSnapshot(now, rr).Scope(metrics.ScopeModel, 0) {
		t.Errorf("a scope without windows yielded %q", k)
	}
	var nilSnap *autoscale.Snapshot
	if _, ok := nilSnap.Snapshot(metrics.ScopeBackend, "a", 0); ok || nilSnap.Keys(metrics.ScopeBackend) != nil {
		t.Error("the nil snapshot read something")
	}
	for k := range nilSnap.Scope(metrics.ScopeBackend, 0) {
		t.Errorf("the nil snapshot yielded %q", k)
	}
}

// gappedReader lists a, b, c and d; its pass yields a, c and d (b has no window), and
// read alone, c has none either (it went between the reads).
type gappedReader struct{}

func (gappedReader) Snapshot(_ metrics.Scope, key string, _ time.Duration) (metrics.Snapshot, bool) {
	switch key {
	case "a", "d":
		return metrics.Snapshot{Count: uint64(key[0])}, true
	}
	return metrics.Snapshot{}, false
}

func (gappedReader) Keys(metrics.Scope) []string { return []string{"a", "b", "c", "d"} }

func (gappedReader) Scope(_ metrics.Scope, _ time.Duration) iter.Seq2[string, metrics.Snapshot] {
	return func(yield func(string, metrics.Snapshot) bool) {
		for _, k := range []string{"a", "c", "d"} {
			if !yield(k, metrics.Snapshot{Count: uint64(k[0])}) {
				return
			}
		}
	}
}

// TestSnapshotScopeGaps checks a pass whose keys differ from the scope's key list
// (a key without a window, a key read alone as absent): it yields only what it read,
// and the key list stays as listed.
func TestSnapshotScopeGaps(t *testing.T) {
	for _, readC := range []bool{false, true} {
		snap := autoscale.NewSnapshot(t0, gappedReader{})
		keys := snap.Keys(metrics.ScopeBackend)
		want := []string{"a", "c", "d"}
		if readC {
			if _, ok := snap.Snapshot(metrics.ScopeBackend, "c", 0); ok {
				t.Fatal("c read alone was found")
			}
			want = []string{"a", "d"}
		}
		var got []string
		for k, s := range snap.Scope(metrics.ScopeBackend, 0) {
			if s.Count != uint64(k[0]) {
				t.Errorf("%s: count %d, want %d", k, s.Count, k[0])
			}
			got = append(got, k)
		}
		if !slices.Equal(got, want) {
			t.Errorf("c read alone %v: pass yielded %v, want %v", readC, got, want)
		}
		if k := snap.Keys(metrics.ScopeBackend); !slices.Equal(k, []string{"a", "b", "c", "d"}) || !slices.Equal(keys, k) {
			t.Errorf("c read alone %v: keys %v after the pass, %v before", readC, k, keys)
		}
	}
}

// TestSnapshotMemoises checks that within a snapshot every read of a (scope, key,
// span) returns the first read's figure, however the windows move meanwhile, and that
// the source is read once per figure: alone, in a scope pass, or one after the other.
func TestSnapshotMemoises(t *testing.T) {
	reg, _ := backends(t)
	now := t0.Add(5 * time.Second)
	src := &countingReader{r: keyedReader{autoscale.NewRegistryReader(reg, now)}}
	snap := autoscale.NewSnapshot(now, src)

	first, ok := snap.Snapshot(metrics.ScopeBackend, "a", 0)
	if !ok || first.Count != 30 {
		t.Fatalf("first read = %+v, %v", first, ok)
	}
	// Writes that land in the span read: a live reader would now see 130 requests.
	w := reg.Window(metrics.ScopeBackend, "a")
	for j := range 100 {
		w.RecordAt(t0.Add(4*time.Second+time.Duration(j)*time.Millisecond), metrics.Observation{Latency: time.Second})
	}
	if live, _ := src.r.Snapshot(metrics.ScopeBackend, "a", 0); live.Count != 130 {
		t.Fatalf("the live window reads %d requests, want 130", live.Count)
	}
	if again, _ := snap.Snapshot(metrics.ScopeBackend, "a", 0); again != first {
		t.Errorf("second read = %+v, want the first's %+v", again, first)
	}
	got := map[string]uint64{}
	for k, s := range snap.Scope(metrics.ScopeBackend, 0) {
		got[k] = s.Count
	}
	if want := map[string]uint64{"a": 30, "b": 10, "c": 20}; !cmp.Equal(got, want) {
		t.Errorf("scope pass counts = %v, want %v (a as first read)", got, want)
	}
	for range snap.Scope(metrics.ScopeBackend, 0) {
	}
	if s, _ := snap.Snapshot(metrics.ScopeBackend, "b", 0); s.Count != 10 {
		t.Errorf("b after the pass = %d requests, want 10", s.Count)
	}
	if _, ok := snap.Snapshot(metrics.ScopeBackend, "gone", 0); ok {
		t.Error("a listed key without a window was found")
	}
	snap.Keys(metrics.ScopeBackend)
	snap.Keys(metrics.ScopeBackend)
	// a alone; b, c, gone in the pass; gone alone again (not in the pass, so asked).
	if src.snapshots != 5 || src.listed != 1 {
		t.Errorf("source read %d snapshots and listed keys %d times, want 5 and 1 (the pass lists the keys Keys returns)", src.snapshots, src.listed)
	}
}

// TestSnapshotFrozenAndJSON checks that a frozen snapshot answers what was read and
// nothing else, and survives a JSON round trip unchanged.
func TestSnapshotFrozenAndJSON(t *testing.T) {
	reg, _ := backends(t)
	now := t0.Add(5 * time.Second)
	snap := autoscale.NewSnapshot(now, autoscale.NewRegistryReader(reg, now))
	a, _ := snap.Snapshot(metrics.ScopeBackend, "a", time.Second)
	var pass []string
	for k := range snap.Scope(metrics.ScopeBackend, 0) {
		pass = append(pass, k)
	}
	keys := snap.Keys(metrics.ScopeBackend)
	snap.Freeze()
	if !snap.Frozen() {
		t.Fatal("not frozen")
	}
	if _, ok := snap.Snapshot(metrics.ScopeBackend, "a", 2*time.Second); ok {
		t.Error("a frozen snapshot read a span not read before")
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back autoscale.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*autoscale.Snapshot{"frozen": snap, "decoded": &back} {
		if got, ok := s.Snapshot(metrics.ScopeBackend, "a", time.Second); !ok || got != a {
			t.Errorf("%s: a over 1s = %+v, %v, want %+v", name, got, ok, a)
		}
		var got []string
		for k := range s.Scope(metrics.ScopeBackend, 0) {
			got = append(got, k)
		}
		if !slices.Equal(got, pass) || !slices.Equal(s.Keys(metrics.ScopeBackend), keys) || !s.Now().Equal(now) {
			t.Errorf("%s: pass %v keys %v now %v, want %v %v %v", name, got, s.Keys(metrics.ScopeBackend), s.Now(), pass, keys, now)
		}
	}
	for _, bad := range []string{
		`{"passes":[{"scope":"backend","keys":["b","a"],"snapshots":[{},{}]}]}`,
		`{"passes":[{"scope":"backend","keys":["a"],"snapshots":[]}]}`,
		`{"reads":3}`,
	} {
		if err := json.Unmarshal([]byte(bad), new(autoscale.Snapshot)); err == nil {
			t.Errorf("decoded %s", bad)
		}
	}
}

// TestLoopSnapshot checks the tick's data flow: the live policy and the shadows read
// one snapshot (the shadow sees the live policy's figures though the window moved in
// between), the decision records a scope pass by its size and the key reads up to the
// limit, and the tick's input is frozen once the step ends.
func TestLoopSnapshot(t *testing.T) {
	reg, clock := backends(t)
	now := t0.Add(5 * time.Second)
	var liveCount, shadowCount uint64
	live := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		for range in.Metrics.Scope(metrics.ScopeBackend, 0) {
		}
		s, _ := in.Metrics.Snapshot(metrics.ScopeBackend, "a", 0)
		liveCount = s.Count
		for i := range 50 {
			in.Metrics.Snapshot(metrics.ScopeRoute, fmt.Sprint("r", i), 0)
		}
		w := reg.Window(metrics.ScopeBackend, "a")
		for j := range 100 {
			w.RecordAt(t0.Add(4*time.Second+time.Duration(j)*time.Millisecond), metrics.Observation{Latency: time.Second})
		}
		return nil, nil
	})
	shadow := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		s, _ := in.Metrics.Snapshot(metrics.ScopeBackend, "a", 0)
		shadowCount = s.Count
		in.Metrics.Snapshot(metrics.ScopeTenant, "shadow-only", 0)
		return nil, nil
	})
	l := newLoop(t, autoscale.WithPolicy(live), autoscale.WithShadow("s", shadow), autoscale.WithRegistry(reg),
		autoscale.WithClock(clock), autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 5, Actuator: nopActuator{}}))
	tk := step(t, l, now)
	if liveCount != 30 || shadowCount != 30 {
		t.Errorf("live read %d requests, shadow %d; want 30 for both", liveCount, shadowCount)
	}
	d := tk.Decisions[0]
	if want := []autoscale.ScopeRead{{Scope: metrics.ScopeBackend, Windows: 3}}; !cmp.Equal(d.ScopeInputs, want) {
		t.Errorf("scope inputs = %+v, want %+v", d.ScopeInputs, want)
	}
	// a (read from the pass), then r0..r49, of which the first 31 fit.
	if len(d.Inputs) != autoscale.MaxRecordedReads || d.InputsDropped != 51-autoscale.MaxRecordedReads ||
		d.Inputs[0].Key != "a" || d.Inputs[0].Snapshot.Count != 30 || d.Inputs[1].Key != "r0" || d.Inputs[1].Found {
		t.Errorf("inputs = %d (%v ...), dropped %d", len(d.Inputs), d.Inputs[:2], d.InputsDropped)
	}
	for _, r := range d.Inputs {
		if r.Scope == metrics.ScopeTenant {
			t.Errorf("the shadow's read was recorded as the live policy's: %+v", r)
		}
	}
	snap := tk.Input.Metrics
	if !snap.Frozen() || !tk.Input.Now.Equal(now) || len(tk.Input.Targets) != 1 {
		t.Fatalf("tick input: frozen %v, %+v", snap.Frozen(), tk.Input)
	}
	if _, ok := snap.Snapshot(metrics.ScopeBackend, "b", 5*time.Second); ok {
		t.Error("the frozen input read a window after the tick")
	}
	if s, _ := snap.Snapshot(metrics.ScopeBackend, "a", 0); s.Count != 30 {
		t.Errorf("the frozen input reads a as %d requests, want 30", s.Count)
	}
}
