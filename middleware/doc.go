// Package middleware wraps any [http.Handler] so that every request is recorded into the
// metric windows of a [metrics.Registry]: per route, tenant and model, or any keys a
// [Classifier] derives.
//
// It is the data plane's entry point: cheap enough to leave on in production (the
// benchmarks in this package compare it with a bare handler and with otelhttp), it keeps
// the optional ResponseWriter interfaces working (Flusher, Hijacker, ReaderFrom, and
// Unwrap for [http.ResponseController]), times streamed responses to their first flush,
// records a panicking handler as a failure before letting the panic go on, and tells a
// client that went away from a server error.
//
// Usage:
//
//	reg, _ := metrics.NewRegistry()
//	mw := middleware.New(middleware.WithRegistry(reg))
//	http.ListenAndServe(":8080", mw(mux))
//	...
//	w, _ := reg.Lookup(metrics.ScopeRoute, "GET /checkout")
//	fmt.Println(w.Snapshot(10*time.Second).P99)
package middleware
