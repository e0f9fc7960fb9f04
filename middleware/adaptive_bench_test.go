package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// The adaptive limit's cost is BenchmarkAdmitAdaptive minus BenchmarkAdmitPlain (the
// same request through an admission without one); each request ends 1 ms after it
// arrived and time moves 1 µs per request, so the limit's window ends (and its update
// runs) every 250 ms of simulated time, as in use. The Parallel pair runs the same on
// every core.

func benchAdmission(b *testing.B, adaptive bool) *middleware.Admission {
	var opts []middleware.AdmissionOption
	if adaptive {
		reg, err := metrics.NewRegistry()
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, middleware.WithAdmissionRegistry(reg), middleware.WithAdaptiveLimit(middleware.AdaptiveConfig{
			InitialLimit: 1000, MaxLimit: 100_000,
			Classes: []middleware.Class{{Priority: 0, Ceiling: 0.5}, {Priority: 1, Ceiling: 1}},
		}))
	}
	return newAdmission(b, middleware.AdmissionConfig{}, opts...)
}

func admitLoop(b *testing.B, a *middleware.Admission, next func() bool) {
	ctx := context.Background()
	in := middleware.Info{Route: "/api", Tenant: "acme", Priority: 1, Now: t0}
	for next() {
		p, err := a.Admit(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		p.DoneAt(in.Now.Add(time.Millisecond), metrics.OutcomeOK)
		in.Now = in.Now.Add(time.Microsecond)
	}
}

func benchAdmit(b *testing.B, adaptive bool) {
	a := benchAdmission(b, adaptive)
	b.ReportAllocs()
	admitLoop(b, a, b.Loop)
}

func benchAdmitParallel(b *testing.B, adaptive bool) {
	a := benchAdmission(b, adaptive)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) { admitLoop(b, a, pb.Next) })
}

func BenchmarkAdmitPlain(b *testing.B)            { benchAdmit(b, false) }
func BenchmarkAdmitAdaptive(b *testing.B)         { benchAdmit(b, true) }
func BenchmarkAdmitPlainParallel(b *testing.B)    { benchAdmitParallel(b, false) }
func BenchmarkAdmitAdaptiveParallel(b *testing.B) { benchAdmitParallel(b, true) }
