package autoscale

import (
	"cmp"
	"iter"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Snapshot is the metric input of one tick: a frozen, memoising view of the windows as
// of the tick's time. The first read of (scope, key, span) computes the figure from
// the source [Reader] (the registry's windows, or a merge of several gateways'); every
// later read of the same triple in the tick, by the live policy, a shadow or the Lua
// aggregates, returns that same figure without reading the window again. A whole-scope
// read ([Snapshot.Scope]) is memoised as one pass, and the keys of a scope are listed
// once ([Snapshot.Keys]).
//
// The loop builds one per tick, hands it to every policy in [Input.Metrics], and
// freezes it when the tick ends: from then on it reads only what was read during the
// tick (a read of anything else finds no window), so that a kept [Tick.Input] can be
// replayed (see package autoscale/simulate) or saved as JSON ([Snapshot.MarshalJSON]).
// A Snapshot is itself a [ScopeReader] and a [SourceReader], so a recorded one can be
// the source of a replayed tick.
//
// The nil *Snapshot reads nothing. A Snapshot is safe for concurrent use; the slices
// and snapshots it returns are shared and must not be modified.
type Snapshot struct {
	now     time.Time
	sources []string

	mu     sync.Mutex
	src    Reader // nil once frozen
	figs   map[readKey]figure
	keys   map[metrics.Scope][]string
	passes []*scopePass

	// The read log, kept for the tick's decisions while logging is on (the live
	// policy's call): the first maxLog key reads, every whole-scope pass.
	logOn   bool
	maxLog  int
	log     []Read
	scopes  []ScopeRead
	dropped int
}

var (
	_ ScopeReader  = (*Snapshot)(nil)
	_ SourceReader = (*Snapshot)(nil)
)

type readKey struct {
	scope metrics.Scope
	key   string
	span  time.Duration
}

type figure struct {
	s  metrics.Snapshot
	ok bool
}

// scopePass is one whole-scope read: the keys, in order, and their snapshots. It is
// immutable once built, so that iterating it needs no lock.
type scopePass struct {
	scope metrics.Scope
	span  time.Duration
	keys  []string
	snaps []metrics.Snapshot
}

// ScopeRead is one whole-scope read a policy made of a tick's [Snapshot]: the record
// names the scope, the span and how many windows it covered, not their figures, so that
// a policy aggregating a thousand keys leaves a record of a few dozen bytes.
type ScopeRead struct {
	Scope metrics.Scope
	Span  time.Duration
	// Windows is the number of windows the pass yielded.
	Windows int
}

// NewSnapshot returns the view of src as of now, memoising every read. Use it to call
// a policy outside a loop (tests, tools): the loop builds its own. A nil src reads
// nothing. When src is a [SourceReader], the snapshot reports its sources.
func NewSnapshot(now time.Time, src Reader) *Snapshot {
	s := &Snapshot{now: now, src: src}
	if sr, ok := src.(SourceReader); ok {
		s.sources = sr.Sources()
	}
	return s
}

// Now returns the time the snapshot reads the windows at.
func (s *Snapshot) Now() time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.now
}

// Sources names the sources the source reader merged (see [SourceReader]); nil when it
// is not one.
func (s *Snapshot) Sources() []string {
	if s == nil {
		return nil
	}
	return s.sources
}

// Snapshot summarizes the window of (scope, key) over span (zero means the whole
// window) as of the snapshot's time; false when there is no such window. The first
// read of a triple reads the source; later reads return the same figure.
func (s *Snapshot) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	if s == nil {
		return metrics.Snapshot{}, false
	}
	k := readKey{scope, key, span}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.figs[k]; ok {
		return f.s, f.ok
	}
	var f figure
	if p := s.pass(scope, span); p != nil {
		if i, found := slices.BinarySearch(p.keys, key); found {
			f = figure{p.snaps[i], true}
		} else if s.src == nil {
			return metrics.Snapshot{}, false // frozen: not read during the tick
		} else {
			f.s, f.ok = s.src.Snapshot(scope, key, span)
		}
	} else if s.src != nil {
		f.s, f.ok = s.src.Snapshot(scope, key, span)
	} else {
		return metrics.Snapshot{}, false
	}
	if s.figs == nil {
		s.figs = map[readKey]figure{}
	}
	s.figs[k] = f
	if s.logOn {
		if len(s.log) < s.maxLog {
			s.log = append(s.log, Read{Scope: scope, Key: key, Span: span, Found: f.ok, Snapshot: f.s})
		} else {
			s.dropped++
		}
	}
	return f.s, f.ok
}

// Keys lists the keys of a scope, sorted; the first call reads the source, later ones
// return the same list. The list is shared: do not modify it.
func (s *Snapshot) Keys(scope metrics.Scope) []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keysLocked(scope)
}

func (s *Snapshot) keysLocked(scope metrics.Scope) []string {
	if ks, ok := s.keys[scope]; ok {
		return ks
	}
	var ks []string
	switch {
	case s.src != nil:
		ks = s.src.Keys(scope)
	default: // frozen: the keys of a pass over the scope, if one was made
		for _, p := range s.passes {
			if p.scope == scope {
				ks = p.keys
				break
			}
		}
	}
	if s.keys == nil {
		s.keys = map[metrics.Scope][]string{}
	}
	s.keys[scope] = ks
	return ks
}

// Scope yields the key and the snapshot over span of every window of scope, in key
// order. The first pass over (scope, span) reads the source in one pass when it is a
// [ScopeReader] (else key by key) and is kept; later passes yield the same figures.
// A key read alone earlier in the tick yields the figure that read returned.
func (s *Snapshot) Scope(scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot] {
	return func(yield func(string, metrics.Snapshot) bool) {
		if s == nil {
			return
		}
		p := s.scopePass(scope, span)
		for i, k := range p.keys {
			if !yield(k, p.snaps[i]) {
				return
			}
		}
	}
}

// scopePass returns the pass over (scope, span), making it on first use.
func (s *Snapshot) scopePass(scope metrics.Scope, span time.Duration) *scopePass {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pass(scope, span); p != nil {
		return p
	}
	// Sized by the scope's key list (listed once per tick anyway), a pass over 1,000
	// windows allocates its snapshots once (BenchmarkOnTick1000Windows), and shares the
	// key list when it yields the same keys, as a registry's pass does.
	keys := s.keysLocked(scope)
	p := &scopePass{scope: scope, span: span, snaps: make([]metrics.Snapshot, 0, len(keys))}
	b := &passBuilder{s: s, p: p, keys: keys, agree: true}
	switch src := s.src.(type) {
	case nil:
		// Frozen without a pass: the scope's keys read alone, in order.
		b.agree = false
		for k, f := range s.figs {
			if k.scope == scope && k.span == span && f.ok {
				p.keys = append(p.keys, k.key)
			}
		}
		sort.Strings(p.keys)
		for _, k := range p.keys {
			p.snaps = append(p.snaps, s.figs[readKey{scope, k, span}].s)
		}
	case ScopeReader:
		for k, snap := range src.Scope(scope, span) {
			b.add(k, &snap)
		}
	default:
		for _, k := range keys {
			if f, read := s.figs[readKey{scope, k, span}]; read {
				b.add(k, &f.s) // add takes the figure read
			} else if snap, ok := src.Snapshot(scope, k, span); ok {
				b.add(k, &snap)
			}
		}
	}
	if b.agree {
		p.keys = keys[:b.shared:b.shared]
	}
	s.passes = append(s.passes, p)
	if s.logOn {
		s.scopes = append(s.scopes, ScopeRead{Scope: scope, Span: span, Windows: len(p.keys)})
	}
	return p
}

// passBuilder fills a scopePass, under the snapshot's lock. While the keys it is given
// agree with the scope's key list, it counts them (shared) instead of copying them.
type passBuilder struct {
	s      *Snapshot
	p      *scopePass
	keys   []string
	shared int
	agree  bool
}

// add appends key k and its snapshot, or the figure k was read alone at earlier.
func (b *passBuilder) add(k string, snap *metrics.Snapshot) {
	p := b.p
	if len(b.s.figs) != 0 {
		if f, ok := b.s.figs[readKey{p.scope, k, p.span}]; ok {
			if !f.ok {
				b.diverge()
				return // read alone as absent: stays absent
			}
			snap = &f.s
		}
	}
	if b.agree && b.shared < len(b.keys) && b.keys[b.shared] == k {
		b.shared++
	} else {
		b.diverge()
		p.keys = append(p.keys, k)
	}
	p.snaps = append(p.snaps, *snap)
}

// diverge copies the keys shared so far: from now on the pass keeps its own.
func (b *passBuilder) diverge() {
	if b.agree {
		b.p.keys, b.agree = slices.Clone(b.keys[:b.shared]), false
	}
}

func (s *Snapshot) pass(scope metrics.Scope, span time.Duration) *scopePass {
	for _, p := range s.passes {
		if p.scope == scope && p.span == span {
			return p
		}
	}
	return nil
}

// startLog makes the snapshot log the reads made from now on, keeping at most max key
// reads (the others are counted).
func (s *Snapshot) startLog(max int) {
	s.mu.Lock()
	s.logOn, s.maxLog = true, max
	s.mu.Unlock()
}

// stopLog ends the log and returns it.
func (s *Snapshot) stopLog() (reads []Read, scopes []ScopeRead, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logOn = false
	return slices.Clip(s.log), slices.Clip(s.scopes), s.dropped
}

// Freeze detaches the snapshot from its source: from then on it reads only what was
// read before (anything else finds no window). The loop freezes each tick's snapshot
// when the tick ends. Freeze is idempotent.
func (s *Snapshot) Freeze() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.src = nil
	s.mu.Unlock()
}

// Frozen reports whether the snapshot is detached from its source.
func (s *Snapshot) Frozen() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src == nil
}

// sortedFigs returns the memoised reads in (scope, key, span) order.
func (s *Snapshot) sortedFigs() []Read {
	out := make([]Read, 0, len(s.figs))
	for k, f := range s.figs {
		out = append(out, Read{Scope: k.scope, Key: k.key, Span: k.span, Found: f.ok, Snapshot: f.s})
	}
	slices.SortFunc(out, func(a, b Read) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Span, b.Span))
	})
	return out
}

// MaxRecordedReads bounds the key reads a tick's record keeps (see [Decision.Inputs]):
// a tick keeps the first max(MaxRecordedReads, 2 × targets). With it the history's
// memory is bounded: a kept read is about 190 bytes, and a tick's reads are shared by
// its decisions, so DefaultHistory decisions hold at most about 1,024 × 32 reads with
// one target, and less with more: 6.5 MB measured by TestHistoryMemory (1,024
// decisions of a policy aggregating 1,000 windows), whose bound is 16 MB.
const MaxRecordedReads = 32
