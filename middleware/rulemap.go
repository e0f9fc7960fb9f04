package middleware

import (
	"hash/maphash"
	"sync/atomic"
)

// ruleShards is how many shards a ruleMap splits its keys over: adding or removing a
// key copies one shard, 1/1,024 of the rules (about 10 at the default MaxRules).
const ruleShards = 1024

// ruleMap holds one kind of admission rule by string key (route, tenant, route or
// model) for a lock-free request path. It is sharded and copy-on-write per shard: a
// read is a hash, one atomic load and one map lookup; adding or removing a key (under
// the admission's mutex) copies only its shard; changing an existing key's rule
// copies nothing, since each entry holds its rule in an atomic pointer. Each entry
// records when it was last set, so that a rule the loop stops re-issuing expires.
type ruleMap[V any] struct {
	n      atomic.Int64 // keys held; first, read on every request
	seed   maphash.Seed
	sweep  int   // the next shard sweep visits (under the admission's mutex)
	fullAt int64 // when a full sweep last ran (under the admission's mutex)
	shards [ruleShards]atomic.Pointer[map[string]*ruleEntry[V]]
}

// ruleEntry is one key's rule and the time (clock nanoseconds) it was last set.
type ruleEntry[V any] struct {
	rule  atomic.Pointer[V]
	setAt atomic.Int64
}

func newRuleMap[V any]() *ruleMap[V] {
	return &ruleMap[V]{seed: maphash.MakeSeed()}
}

func (m *ruleMap[V]) shard(k string) *atomic.Pointer[map[string]*ruleEntry[V]] {
	return &m.shards[maphash.String(m.seed, k)&(ruleShards-1)]
}

// get returns k's entry; it takes no lock and allocates nothing.
func (m *ruleMap[V]) get(k string) (*ruleEntry[V], bool) {
	p := m.shard(k).Load()
	if p == nil {
		return nil, false
	}
	e, ok := (*p)[k]
	return e, ok
}

// add inserts a new key, copying its shard. The caller holds the admission's mutex
// and has checked that k is absent.
func (m *ruleMap[V]) add(k string, e *ruleEntry[V]) {
	sh := m.shard(k)
	var old map[string]*ruleEntry[V]
	if p := sh.Load(); p != nil {
		old = *p
	}
	nm := make(map[string]*ruleEntry[V], len(old)+1)
	for key, v := range old {
		nm[key] = v
	}
	nm[k] = e
	sh.Store(&nm)
	m.n.Add(1)
}

// del removes k, copying its shard; the caller holds the admission's mutex.
func (m *ruleMap[V]) del(k string) {
	sh := m.shard(k)
	p := sh.Load()
	if p == nil {
		return
	}
	if _, ok := (*p)[k]; !ok {
		return
	}
	nm := make(map[string]*ruleEntry[V], len(*p))
	for key, v := range *p {
		if key != k {
			nm[key] = v
		}
	}
	sh.Store(&nm)
	m.n.Add(-1)
}

// prune removes, from the next shard in turn (or from all when all is set), the
// entries set before cutoff, and returns how many it removed; the caller holds the
// admission's mutex. Called on every change, it visits each shard once per 1,024
// changes, so stale rules are reclaimed at a cost of one shard per change.
func (m *ruleMap[V]) prune(cutoff int64, all bool) int {
	removed := 0
	for range ruleShards {
		sh := &m.shards[m.sweep]
		m.sweep = (m.sweep + 1) % ruleShards
		if p := sh.Load(); p != nil {
			stale := 0
			for _, e := range *p {
				if e.setAt.Load() < cutoff {
					stale++
				}
			}
			if stale > 0 {
				nm := make(map[string]*ruleEntry[V], len(*p)-stale)
				for key, e := range *p {
					if e.setAt.Load() >= cutoff {
						nm[key] = e
					}
				}
				sh.Store(&nm)
				m.n.Add(int64(-stale))
				removed += stale
			}
		}
		if !all {
			break
		}
	}
	return removed
}
