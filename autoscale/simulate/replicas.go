package simulate

import (
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// This file is the model's side of scaling: a new spec count starts or removes
// replicas, a removed replica drains and is freed, and the ready replicas are
// published to the balancer.

// scaleTo applies a new spec count at t.
func (m *model) scaleTo(n int, t int64) error {
	cur := m.starting + m.ready
	if n == cur {
		return nil
	}
	m.bill(t)
	m.scales = append(m.scales, ScaleEvent{At: time.Duration(t), From: cur, To: n})
	poolChanged := false
	if n > cur {
		for range n - cur {
			ri := m.newReplica()
			rep := m.reps[ri]
			rep.state = repStarting
			m.starting++
			m.eng.schedule(event{t: t + m.cold, kind: evReady, idx: ri, gen: rep.gen})
		}
	} else {
		for k := cur - n; k > 0; k-- {
			// Not-ready replicas go first, the youngest first (as a ReplicaSet does);
			// then the ready replica with the least work, the newest on ties.
			best := int32(-1)
			for i := len(m.reps) - 1; i >= 0; i-- {
				rep := m.reps[i]
				switch {
				case rep.state == repStarting:
					if best < 0 || m.reps[best].state != repStarting {
						best = int32(i)
					}
				case rep.state == repReady:
					if best < 0 || (m.reps[best].state == repReady && rep.busy+rep.queued < m.reps[best].busy+m.reps[best].queued) {
						best = int32(i)
					}
				}
			}
			rep := m.reps[best]
			rep.gen++
			if rep.state == repStarting {
				rep.state = repFree
				m.starting--
				continue
			}
			rep.state = repDraining
			m.ready--
			m.draining++
			rep.billUntil = t + int64(m.svc.ScaleDownDelay)
			poolChanged = true
			if rep.billUntil > t {
				m.eng.schedule(event{t: rep.billUntil, kind: evDrained, idx: best, gen: rep.gen})
			}
			m.maybeGone(best, t)
		}
	}
	m.maxRep = max(m.maxRep, m.starting+m.ready+m.draining)
	if poolChanged {
		if err := m.updatePool(); err != nil {
			return err
		}
		return m.setReady()
	}
	return nil
}

// maybeGone frees a draining replica that is empty and past its billing delay.
func (m *model) maybeGone(ri int32, t int64) {
	rep := m.reps[ri]
	if rep.state != repDraining || rep.busy > 0 || rep.queued > 0 || t < rep.billUntil {
		return
	}
	m.bill(t)
	rep.state = repFree
	rep.gen++
	rep.queue.reset()
	m.draining--
	if rep.backend != nil {
		delete(m.byBackend, rep.backend)
		rep.backend = nil
	}
}

// updatePool publishes the ready replicas to the balancer.
func (m *model) updatePool() error {
	m.endpoints = m.endpoints[:0]
	for _, rep := range m.reps {
		if rep.state == repReady {
			m.endpoints = append(m.endpoints, balancer.Endpoint{ID: rep.id, URL: rep.url})
		}
	}
	if err := m.pool.Update(m.endpoints); err != nil {
		return fmt.Errorf("simulate: balancer update: %w", err)
	}
	for i, rep := range m.reps {
		if rep.state != repReady {
			continue
		}
		b, ok := m.pool.Lookup(rep.id)
		if !ok {
			return fmt.Errorf("simulate: balancer lost replica %s", rep.id)
		}
		if rep.backend != b {
			if rep.backend != nil {
				delete(m.byBackend, rep.backend)
			}
			rep.backend = b
		}
		m.byBackend[b] = int32(i)
	}
	return nil
}
