package luabind

import (
	"context"
	"net/http"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// BalancerPick returns a [balancer.PickFunc] that runs the script's pick over a pool's
// ready backends (install it with the pool's SetPickFunc). Each backend's view is
// filled from its accessors: id, in-flight, peak-EWMA latency, weight, health and
// labels; with windowSpan > 0, p99 and error rate come from a snapshot of the
// backend's window over that span (a few microseconds per backend per pick), else
// they are 0. queue, kv_cache and load_age come from the backend's load report
// ([balancer.Backend.Load], from an active health check or a scraper such as package
// balancer/loadreport); they are nil when it has none, or when the report is older
// than [WithLoadMaxAge]. The request view has the HTTP request's method, path, host, headers and
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
				ID: b.ID(), InFlight: b.InFlight(), EWMA: b.PeakLatency(now),
				Weight: b.Weight(), Healthy: b.Healthy(), Labels: b.Labels(),
			}
			if lr := b.Load(); lr != nil {
				age := max(now.Sub(lr.At), 0)
				if r.cfg.loadMaxAge == 0 || age <= r.cfg.loadMaxAge {
					v.HasLoad, v.Queue, v.KVCache, v.LoadAge = true, lr.Queue, lr.KVCache, age
				}
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

// ProxyHook returns a [balancer.ProxyHook] that runs the script's on_response after
// every request a [balancer.Proxy] serves (install it with [balancer.WithProxyHook]):
// the log phase where the proxy is the gateway's handler. res shows the status sent,
// the latency, the bytes and the backend (res.backend); values, when not nil, gives the
// values res:value(name) reads (tokens used, read from the backend's response header).
// req has the HTTP request's method, path, host, headers and query, and the route and
// model of the [balancer.Destination] a middleware in front set. A script without
// on_response costs nothing. Install the log phase here or in the middleware
// (luahttp.ResponseHook), not both: each would run on_response for the same request.
func (r *Runtime) ProxyHook(values func(*http.Request, *balancer.ProxyResponse) map[string]any) balancer.ProxyHook {
	return func(h *http.Request, pr balancer.ProxyResponse) {
		if !r.Has(HookResponse) {
			return
		}
		req := Request{Method: h.Method, Host: h.Host, Header: h.Header, ContentLength: h.ContentLength}
		if h.URL != nil {
			req.Path, req.RawQuery = h.URL.Path, h.URL.RawQuery
		}
		if d, ok := balancer.DestinationFrom(h.Context()); ok {
			req.Route, req.Model = d.Route, d.Model
		}
		res := Response{Status: pr.Status, Latency: pr.Latency, Bytes: pr.Bytes, Backend: pr.Backend}
		if values != nil {
			p := pr // pr itself would escape, and cost a script without on_response
			res.Values = values(h, &p)
		}
		_ = r.OnResponse(h.Context(), &req, &res)
	}
}
