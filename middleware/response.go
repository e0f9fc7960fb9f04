package middleware

import (
	"net/http"
	"time"
)

// A ResponseHook runs once for every request the middleware saw, after its response
// (the log phase of OpenResty, where a Lua on_response runs): served, rejected by the
// [Hook] or the [Admission], or ended by a panicking handler. k are the request's final
// keys. It runs on the request's goroutine after the request is recorded, must be safe
// for concurrent use, and must not block; res and its Values are valid only during the
// call.
type ResponseHook func(r *http.Request, k Keys, res Response)

// Response is what a [ResponseHook] sees of a finished request.
type Response struct {
	// Status is the status sent: the handler's (200 when it wrote none), the
	// rejection's, or 500 for a handler that panicked.
	Status int
	// Latency is the time from the request's arrival to the end of the handler.
	Latency time.Duration
	// Bytes counts the response body's bytes written.
	Bytes int64
	// Rejected says why the middleware turned the request away (the [RejectedHeader]
	// values), or "deferred" when a [Deferrer] answered it 202 to replay it later
	// (its replay is reported again when it ends, with Rejected ""); "" when it was
	// served.
	Rejected string
	// Values are what the handler attached with [SetValue], in the order first set.
	Values []Value
}

// Value is a named value a handler attaches to its response with [SetValue].
type Value struct {
	Name  string
	Value any
}

// WithResponseHook sets a hook run after every request. The default is none. With a
// hook, handlers can attach values to the response for it ([SetValue]).
func WithResponseHook(h ResponseHook) Option {
	return func(c *config) error {
		if h == nil {
			return configError("nil response hook")
		}
		c.onResponse = h
		return nil
	}
}

// SetValue attaches a value (tokens used, cost, a cache hit) to the response w is
// writing, for the [ResponseHook]; setting a name again replaces its value. w is the
// ResponseWriter the middleware passed to the handler, or one wrapping it that has an
// Unwrap method (as [http.ResponseController] expects). SetValue reports false, and
// keeps nothing, when w is not the middleware's or the middleware has no response hook.
// The values are kept in the middleware's pooled writer: no allocation past the first
// requests, beyond what boxing v in an interface costs.
func SetValue(w http.ResponseWriter, name string, v any) bool {
	for {
		switch x := w.(type) {
		case *responseWriter:
			if !x.collect {
				return false
			}
			for i := range x.values {
				if x.values[i].Name == name {
					x.values[i].Value = v
					return true
				}
			}
			x.values = append(x.values, Value{name, v})
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return false
		}
	}
}
