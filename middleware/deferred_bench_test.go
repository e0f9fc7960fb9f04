package middleware_test

import (
	"testing"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// A deferrable route with capacity free costs what the same route costs without a
// deferrer: BenchmarkDeferrableFastPath minus BenchmarkAdmittedNoDeferrer.
func benchDeferrable(b *testing.B, deferrable bool) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	adm := newAdmission(b, middleware.AdmissionConfig{MaxConcurrency: 1000})
	opts := []middleware.Option{middleware.WithRegistry(reg), middleware.WithAdmission(adm)}
	if deferrable {
		d, err := middleware.NewDeferrer(middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "/api/items"}}})
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, middleware.WithDeferrer(d))
	}
	serve(b, mustWrap(b, bareHandler(), opts...), true)
}

func BenchmarkAdmittedNoDeferrer(b *testing.B) { benchDeferrable(b, false) }
func BenchmarkDeferrableFastPath(b *testing.B) { benchDeferrable(b, true) }
