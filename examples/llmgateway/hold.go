package main

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// holder wakes a model scaled to zero on its next request and holds the request until
// a replica is ready: the simple way, one wait per request on a channel the fleet
// closes when the model's first replica joins the pool, bounded by a timeout (then the
// proxy answers 503 with Retry-After, or moves down the fallback chain). It asks the
// fleet for the replica itself rather than waiting for the next tick of the loop. A
// full activator (a queue with a bound and its own metrics, the loop told of demand it
// cannot see in windows yet) is left to the library's scale-from-zero work.
type holder struct {
	fleet   *fleet
	pool    *balancer.Pool
	lane    string
	timeout time.Duration
	next    http.Handler
	held    atomic.Int64
}

func (h *holder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d, ok := balancer.DestinationFrom(r.Context()); ok && d.Model != "" && len(h.pool.ReadyFor(d.Model)) == 0 {
		// No ready backend: cold, or its replicas cooled down (then wake is nil and the
		// proxy's fallback chain takes it).
		if ch := h.fleet.wake(strings.TrimSuffix(d.Model, h.lane)); ch != nil {
			h.held.Add(1)
			t := time.NewTimer(h.timeout)
			select {
			case <-ch:
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
			t.Stop()
		}
	}
	h.next.ServeHTTP(w, r)
}
