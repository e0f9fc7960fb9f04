package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// The middleware's cost is the difference between BenchmarkMiddleware and
// BenchmarkBare; otelhttp's is the difference between BenchmarkOtelhttp and
// BenchmarkBare. Each serves the same request to the same handler through an
// httptest.ResponseRecorder that is reset, not reallocated.

var hello = []byte("hello")

func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(hello) })
}

type resettingRecorder struct {
	hdr http.Header
}

func (r *resettingRecorder) Header() http.Header         { return r.hdr }
func (r *resettingRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *resettingRecorder) WriteHeader(int)             {}

func serve(b *testing.B, h http.Handler, tenant bool) {
	req := httptest.NewRequest("GET", "/api/items", nil)
	if tenant {
		req.Header.Set("X-Tenant-ID", "acme")
	}
	w := &resettingRecorder{hdr: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

func serveParallel(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/api/items", nil)
		w := &resettingRecorder{hdr: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, req)
		}
	})
}

func ours(b *testing.B) http.Handler {
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	return mustWrap(b, bareHandler(), middleware.WithRegistry(reg))
}

func otel(b *testing.B) http.Handler {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	b.Cleanup(func() {
		mp.Shutdown(b.Context())
		tp.Shutdown(b.Context())
	})
	return otelhttp.NewHandler(bareHandler(), "items", otelhttp.WithMeterProvider(mp), otelhttp.WithTracerProvider(tp))
}

func BenchmarkBare(b *testing.B)               { serve(b, bareHandler(), false) }
func BenchmarkMiddleware(b *testing.B)         { serve(b, ours(b), false) }
func BenchmarkMiddlewareTenant(b *testing.B)   { serve(b, ours(b), true) }
func BenchmarkOtelhttp(b *testing.B)           { serve(b, otel(b), false) }
func BenchmarkBareParallel(b *testing.B)       { serveParallel(b, bareHandler()) }
func BenchmarkMiddlewareParallel(b *testing.B) { serveParallel(b, ours(b)) }
func BenchmarkOtelhttpParallel(b *testing.B)   { serveParallel(b, otel(b)) }
