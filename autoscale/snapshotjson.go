package autoscale

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// snapshotJSON is a Snapshot's recorded form: what was read during its tick.
type snapshotJSON struct {
	Time    time.Time                  `json:"time"`
	Sources []string                   `json:"sources,omitempty"`
	Reads   []Read                     `json:"reads,omitempty"`
	Keys    map[metrics.Scope][]string `json:"keys,omitempty"`
	Passes  []passJSON                 `json:"passes,omitempty"`
}

type passJSON struct {
	Scope     metrics.Scope      `json:"scope"`
	Span      time.Duration      `json:"span"`
	Keys      []string           `json:"keys"`
	Snapshots []metrics.Snapshot `json:"snapshots"`
}

// MarshalJSON encodes what was read of the snapshot so far: its time, sources, every
// memoised key read, key list and scope pass. Decoded ([Snapshot.UnmarshalJSON]), it
// is a frozen snapshot that answers those reads with the same figures: the form to
// keep ticks in for a later replay. Durations are nanoseconds. It fails when a figure
// is not finite (a user value of NaN or an infinity), which JSON cannot carry.
func (s *Snapshot) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("null"), nil
	}
	s.mu.Lock()
	out := snapshotJSON{Time: s.now, Sources: s.sources, Reads: s.sortedFigs()}
	if len(s.keys) > 0 {
		out.Keys = maps.Clone(s.keys)
	}
	for _, p := range s.passes {
		out.Passes = append(out.Passes, passJSON{Scope: p.scope, Span: p.span, Keys: p.keys, Snapshots: p.snaps})
	}
	s.mu.Unlock()
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("autoscale: snapshot: %w", err)
	}
	return b, nil
}

// UnmarshalJSON decodes a snapshot encoded by [Snapshot.MarshalJSON] into s, frozen.
// It reports a pass whose keys are not sorted or unique, or whose snapshots do not
// match its keys.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	var in snapshotJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("autoscale: snapshot: %w", err)
	}
	n := Snapshot{now: in.Time, sources: in.Sources, keys: in.Keys}
	for _, r := range in.Reads {
		if n.figs == nil {
			n.figs = map[readKey]figure{}
		}
		n.figs[readKey{r.Scope, r.Key, r.Span}] = figure{r.Snapshot, r.Found}
	}
	for i, p := range in.Passes {
		if len(p.Keys) != len(p.Snapshots) {
			return fmt.Errorf("autoscale: snapshot: pass %d has %d keys and %d snapshots", i, len(p.Keys), len(p.Snapshots))
		}
		if !slices.IsSorted(p.Keys) || len(slices.Compact(slices.Clone(p.Keys))) != len(p.Keys) {
			return fmt.Errorf("autoscale: snapshot: pass %d (%s): keys not sorted and unique", i, p.Scope)
		}
		if n.pass(p.Scope, p.Span) != nil {
			return fmt.Errorf("autoscale: snapshot: pass %d (%s over %v) repeats an earlier one", i, p.Scope, p.Span)
		}
		n.passes = append(n.passes, &scopePass{scope: p.Scope, span: p.Span, keys: p.Keys, snaps: p.Snapshots})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now, s.sources, s.src = n.now, n.sources, nil
	s.figs, s.keys, s.passes = n.figs, n.keys, n.passes
	s.logOn, s.log, s.scopes, s.dropped = false, nil, nil, 0
	return nil
}
