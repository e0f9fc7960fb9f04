package simulate

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// quotas throttles the tenants of a [Mix] that have a [Tenant.Quota], as a
// middleware.TenantLimiter. The map is read-only after construction and
// rate.Limiter is safe for concurrent use, so quotas is too.
type quotas map[string]*rate.Limiter

var _ middleware.TenantLimiter = quotas(nil)

// newQuotas returns the quotas of m's tenants, or nil when none has one.
func newQuotas(m Mix) quotas {
	var q quotas
	for _, t := range m {
		if !(t.Quota > 0) {
			continue
		}
		if q == nil {
			q = quotas{}
		}
		burst := t.QuotaBurst
		if burst == 0 {
			burst = max(1, int(math.Ceil(t.Quota)))
		}
		q[t.Name] = rate.NewLimiter(rate.Limit(t.Quota), burst)
	}
	return q
}

// AllowN takes n tokens from tenant's bucket, or says how long until it has them.
// It allocates nothing.
func (q quotas) AllowN(tenant string, now time.Time, n int) (bool, time.Duration) {
	l, ok := q[tenant]
	if !ok || l.AllowN(now, n) {
		return true, 0
	}
	need := float64(n) - l.TokensAt(now)
	return false, time.Duration(math.Ceil(need / float64(l.Limit()) * float64(time.Second)))
}
