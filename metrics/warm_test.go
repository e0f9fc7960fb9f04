package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestWindowsPassWhileWriting reads every window of two scopes, one default and one
// compact, through Registry.Windows (which warms the windows ahead of each read) while
// writers move the windows' buckets, some never read before, some never written: the
// prefetching must neither race (under -race) nor change a read, and each window must
// read what was recorded into it.
func TestWindowsPassWhileWriting(t *testing.T) {
	defer func(m int) { warmMin = m }(warmMin)
	warmMin = 0 // warm this small pass too
	r, clk := newTestRegistry(t, WithScopeWindow(ScopeTenant, WindowConfig{Compact: true}))
	const n = 40
	for _, sc := range []Scope{ScopeBackend, ScopeTenant} {
		for i := range n {
			w := r.Window(sc, fmt.Sprintf("k%02d", i))
			if i%5 == 0 {
				continue // an empty window: no bucket, no read cache
			}
			for s := range 3 {
				w.RecordAt(t0.Add(time.Duration(s)*time.Second), Observation{Latency: time.Duration(1+i) * time.Millisecond})
			}
		}
	}
	at := t0.Add(3 * time.Second)
	clk.Set(at)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, sc := range []Scope{ScopeBackend, ScopeTenant} {
					w := r.Window(sc, fmt.Sprintf("k%02d", (g*7+j)%n))
					w.RecordAt(at.Add(time.Duration(j%3)*time.Second), Observation{Latency: time.Millisecond})
				}
			}
		}()
	}
	for range 50 {
		for _, sc := range []Scope{ScopeBackend, ScopeTenant} {
			for w := range r.Windows(sc) {
				if s := w.SnapshotAt(at.Add(2*time.Second), 0); s.Count > 0 && s.P99 == 0 {
					t.Errorf("%s %s: %d requests, p99 0", sc, w.Key(), s.Count)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	// Quiet now: a pass reads what a direct read does.
	for _, sc := range []Scope{ScopeBackend, ScopeTenant} {
		var got []Snapshot
		for w := range r.Windows(sc) {
			got = append(got, w.SnapshotAt(at.Add(2*time.Second), 0))
		}
		for i, k := range r.Keys(sc) {
			w, _ := r.Lookup(sc, k)
			if want := w.SnapshotAt(at.Add(2*time.Second), 0); got[i] != want {
				t.Errorf("%s %s: pass read %+v, direct read %+v", sc, k, got[i], want)
			}
		}
	}
}
