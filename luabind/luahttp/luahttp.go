// Package luahttp plugs a Lua script's on_request and on_response (a
// [luabind.Runtime]) into the recording middleware, as its [middleware.Hook] and its
// [middleware.ResponseHook]: the access and log phases of an OpenResty gateway, in Go.
//
//	rt, _ := luabind.New(src)
//	mw, err := middleware.New(middleware.WithRegistry(reg),
//		middleware.WithHook(luahttp.Hook(rt)), middleware.WithResponseHook(luahttp.ResponseHook(rt)))
//
// on_response then runs once for every request on_request saw, served or rejected,
// with the response's status, latency and bytes and the values the handler attached
// with [middleware.SetValue] (res:value(name)). Install the log phase here or on a
// [balancer.Proxy] (luabind's Runtime.ProxyHook), not both: each would run
// on_response for the same request.
//
// The script sees the request's method, path, host, headers, query, the middleware's
// keys (route, tenant, model, priority), the content length and, when the host
// estimates them, tokens; what it returns changes the keys, sets response headers or
// rejects the request (see luabind's REFERENCE.md).
//
// This package imports both luabind and middleware, which do not import each other
// (luabind stands on metrics, autoscale and balancer, middleware on metrics and
// balancer only); it is the small leaf that joins them, as otelmetrics joins metrics
// to OpenTelemetry.
package luahttp

import (
	"net/http"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// Option configures [Hook].
type Option func(*config)

type config struct {
	tokens func(*http.Request) int64
}

// WithTokens sets how the host estimates a request's tokens (AI gateways), shown to
// the script as req.tokens; by default the script sees nil.
func WithTokens(f func(*http.Request) int64) Option { return func(c *config) { c.tokens = f } }

// Hook returns a middleware hook that runs rt's on_request. A script without
// on_request costs nothing. A failing hook is handled by the runtime's failure policy
// (fail-open by default: the request proceeds); the failure is counted and logged
// there, never shown to the client.
func Hook(rt *luabind.Runtime, opts ...Option) middleware.Hook {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return func(r *http.Request, k middleware.Keys) (middleware.Keys, middleware.Verdict) {
		if !rt.Has(luabind.HookRequest) {
			return k, middleware.Verdict{}
		}
		req := request(r, k)
		if c.tokens != nil {
			req.Tokens = c.tokens(r)
		}
		d, _ := rt.OnRequest(r.Context(), &req)
		var v middleware.Verdict
		if len(d.Headers) > 0 {
			v.Header = verdictHeader(d.Headers)
		}
		if d.Reject {
			v.Status, v.RetryAfter, v.Body = d.Status, d.RetryAfter, d.Body
			return k, v
		}
		if d.SetPriority {
			k.Priority = d.Priority
		}
		if d.Route != "" {
			k.Route = d.Route
		}
		if d.Tenant != "" {
			k.Tenant = d.Tenant
		}
		if d.Model != "" {
			k.Model = d.Model
		}
		return k, v
	}
}

// ResponseHook returns a middleware response hook that runs rt's on_response after
// every request. A script without on_response costs nothing. req is the request as
// on_request saw it, with the final keys (after the hook and the admission), and
// without tokens (the estimate is on_request's; tokens used are a value the handler
// attaches). A failing on_response is counted and logged by the runtime.
func ResponseHook(rt *luabind.Runtime) middleware.ResponseHook {
	return func(r *http.Request, k middleware.Keys, res middleware.Response) {
		if !rt.Has(luabind.HookResponse) {
			return
		}
		req := request(r, k)
		lres := luabind.Response{Status: res.Status, Latency: res.Latency, Bytes: res.Bytes}
		if len(res.Values) > 0 {
			lres.Values = make(map[string]any, len(res.Values))
			for _, v := range res.Values {
				lres.Values[v.Name] = v.Value
			}
		}
		_ = rt.OnResponse(r.Context(), &req, &lres)
	}
}

// verdictHeader returns hs as a header: the names are canonical already (luabind
// canonicalizes them), and every value shares one backing array, capped at its own
// slot so that an append to one header's values copies rather than overwrite the next
// (two allocations, however many headers; BenchmarkFrontend/free in examples/gateway).
func verdictHeader(hs []luabind.Header) http.Header {
	h := make(http.Header, len(hs))
	vals := make([]string, len(hs))
	for i, x := range hs {
		if prev, ok := h[x.Name]; ok {
			h[x.Name] = append(prev, x.Value) // a repeated name: rare, allocates
			continue
		}
		vals[i] = x.Value
		h[x.Name] = vals[i : i+1 : i+1]
	}
	return h
}

func request(r *http.Request, k middleware.Keys) luabind.Request {
	return luabind.Request{
		Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header, RawQuery: r.URL.RawQuery,
		Tenant: k.Tenant, Route: k.Route, Model: k.Model, Priority: k.Priority, ContentLength: r.ContentLength,
	}
}
