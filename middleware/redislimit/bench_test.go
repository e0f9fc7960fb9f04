package redislimit

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// benchLimiter is a limiter whose tenant holds more tokens than a benchmark spends, so
// that every call takes the allowed path, as most requests do.
func benchLimiter(b *testing.B) *Limiter {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	b.Cleanup(func() { c.Close() })
	l := newLimiter(b, c, Config{})
	if err := l.SetLimit("acme", Limit{Rate: 1, Burst: 1}); err != nil {
		b.Fatal(err)
	}
	(*l.table.Load())["acme"].tokens.Store(math.MaxInt64 / 2)
	return l
}

// BenchmarkAllow is the limiter's request path: a map read and an atomic add.
func BenchmarkAllow(b *testing.B) {
	l := benchLimiter(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.AllowN("acme", now, 1)
	}
}

// BenchmarkAdmit compares the admission of one tenant's request without a tenant
// limiter (local) and with the cluster limiter (cluster); the difference is what the
// cluster-wide limit adds to the request path.
func BenchmarkAdmit(b *testing.B) {
	for _, name := range []string{"local", "cluster"} {
		b.Run("path="+name, func(b *testing.B) {
			var opts []middleware.AdmissionOption
			if name == "cluster" {
				opts = append(opts, middleware.WithTenantLimiter(benchLimiter(b)))
			}
			a, err := middleware.NewAdmission(middleware.AdmissionConfig{}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			in := middleware.Info{Route: "/api", Tenant: "acme", Now: time.Now()}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				p, _ := a.Admit(ctx, in)
				p.Done()
			}
		})
	}
}

// BenchmarkAdmitParallel is BenchmarkAdmit from every core at once, all on one tenant:
// the contended case.
func BenchmarkAdmitParallel(b *testing.B) {
	for _, name := range []string{"local", "cluster"} {
		b.Run("path="+name, func(b *testing.B) {
			var opts []middleware.AdmissionOption
			if name == "cluster" {
				opts = append(opts, middleware.WithTenantLimiter(benchLimiter(b)))
			}
			a, err := middleware.NewAdmission(middleware.AdmissionConfig{}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			in := middleware.Info{Route: "/api", Tenant: "acme", Now: time.Now()}
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, _ := a.Admit(ctx, in)
					p.Done()
				}
			})
		})
	}
}
