package luabind

import (
	"context"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// BalancerPick returns a [balancer.PickFunc] that runs the script's pick over a pool's
// ready backends (install it with the pool's SetPickFunc). Each backend's view is
// filled from its accessors: id, in-flight, peak-EWMA latency, weight, health and
// labels; with windowSpan > 0, p99 and error rate come from a snapshot of the
// backend's window over that span (a few microseconds per backend per pick), else
// they are 0. The request view has the HTTP request's method, path, host, headers and
// query when the pool passes one. A pick that returns nil, fails or answers badly
// yields -1, which makes the pool fall back to its own algorithm; the pool cannot
// reject a request, so [FailClosed] on pick behaves as fail-open here.
func (r *Runtime) BalancerPick(windowSpan time.Duration) balancer.PickFunc {
	return func(breq *balancer.Request, bs []*balancer.Backend) (int, error) {
		ctx := context.Background()
		var req Request
		now := r.cfg.clock.Now()
		if breq != nil {
			if !breq.Now.IsZero() {
				now = breq.Now
			}
			if h := breq.HTTP; h != nil {
				ctx = h.Context()
				req = Request{Method: h.Method, Host: h.Host, Header: h.Header, ContentLength: h.ContentLength}
				if h.URL != nil {
					req.Path, req.RawQuery = h.URL.Path, h.URL.RawQuery
				}
			}
		}
		var buf [16]BackendView
		views := buf[:0]
		for _, b := range bs {
			v := BackendView{
				ID: b.ID(), InFlight: b.InFlight(), EWMA: b.PeakEWMA(now),
				Weight: b.Weight(), Healthy: b.Healthy(), Labels: b.Labels(),
			}
			if w := b.Window(); windowSpan > 0 && w != nil {
				s := w.SnapshotAt(now, windowSpan)
				v.P99, v.ErrorRate = s.P99, s.ErrorRate
			}
			views = append(views, v)
		}
		return r.Pick(ctx, &req, views)
	}
}
