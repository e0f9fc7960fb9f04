package balancer

import (
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Request is what a picker knows about the request it places. It is passed by pointer
// so that picking copies nothing; the pool and the pickers never retain or modify it.
// A Request belongs to one request at a time: do not share one between goroutines.
type Request struct {
	// Key is the affinity key for consistent hashing: a tenant, a session id, a header
	// value. Pickers that do not hash ignore it; an empty key makes [Hash] pick at
	// random.
	Key string
	// Now is the time of the request; pickers that need the time (peak-EWMA) read it
	// here and read the pool's clock only when it is zero. The proxy sets it.
	Now time.Time
	// HTTP is the request being placed, for [PickFunc]s that look at it; may be nil.
	HTTP *http.Request
	// Avoid, when set, names a backend to avoid if another is ready: the proxy sets it
	// to the backend whose connection just failed when it retries.
	Avoid *Backend
	// Model, when set, restricts the pick to the ready backends that serve it (label
	// [LabelModel]); none ready is [ErrNoBackend]. Empty picks from every ready
	// backend.
	Model string
	// Prompt is the request's prompt, or its leading part, for prefix affinity
	// ([Scoring]); pickers that do not score prefixes ignore it. Only its first
	// MaxBlocks × BlockSize bytes are read, and it is not retained. The proxy sets it
	// with [WithPrompt].
	Prompt string
}

// An Algorithm is a load-balancing algorithm. The pool calls Build whenever its set of
// ready backends or their weights change (never on the request path, and one call at a
// time) and then calls the returned Picker for every request until the next change,
// as grpc-go's balancers build pickers. Build may precompute (a hash ring, a weighted
// schedule). A set given to Build is never empty.
type Algorithm interface {
	Build(set *Set) Picker
}

// A Picker chooses a backend from the [Set] it was built for. Pick is called
// concurrently on the request path: it must not block, should not allocate, and must
// return one of the set's backends, or nil when it has none to offer.
type Picker interface {
	Pick(req *Request) *Backend
}

// PickFunc adapts a function to pick a backend by index, the way a Lua pick(req,
// backends) script does (see the luabind package). backends are the ready backends,
// in the pool's order (sorted by id); the function returns an index into them. An
// index out of range, an error or a panic makes the pool fall back to its [Algorithm]
// and count a fallback ([Stats.Fallbacks]). The function must not retain or modify backends. It
// is called concurrently, from every request's goroutine, so it must be safe for
// concurrent use (a Lua pick runs on a VM taken from a pool for the call).
type PickFunc func(req *Request, backends []*Backend) (int, error)

// Set is the immutable set of ready backends a [Picker] is built for: the pool's
// members that are not drained, not ejected and not failing active health checks (or,
// in panic, every member that is not drained). Backends are sorted by id. A Set is
// safe for concurrent use.
type Set struct {
	backends []*Backend
	weights  []float64
	minW     float64
	maxW     float64
	rand     *rand.Rand // nil: math/rand/v2's top-level generator
	clock    metrics.Clock
	total    *atomicInt64 // requests in flight in the pool; nil unless an algorithm asks
}

// Len returns the number of backends.
func (s *Set) Len() int { return len(s.backends) }

// Backends returns the backends. The slice is shared: do not modify it.
func (s *Set) Backends() []*Backend { return s.backends }

// Backend returns the i'th backend.
func (s *Set) Backend(i int) *Backend { return s.backends[i] }

// Weight returns the i'th backend's effective weight: its weight, scaled down while it
// is in slow start. It is above 0.
func (s *Set) Weight(i int) float64 { return s.weights[i] }

// Weights returns the effective weights. The slice is shared: do not modify it.
func (s *Set) Weights() []float64 { return s.weights }

// Uniform reports whether every backend has the same effective weight.
func (s *Set) Uniform() bool { return s.minW == s.maxW }

// Rand returns 64 random bits from the pool's random source.
func (s *Set) Rand() uint64 { return s.rand64() }

// rand64 returns 64 random bits: from math/rand/v2's top-level generator, called
// directly, when the pool has no source of its own ([WithRand]); that saves the pickers
// an interface call per draw.
func (s *Set) rand64() uint64 {
	if s.rand == nil {
		return rand.Uint64()
	}
	return s.rand.Uint64()
}

// Intn returns a random int in [0, n), n > 0, from the pool's random source (Lemire's
// multiply-shift, without division).
func (s *Set) Intn(n int) int {
	hi, _ := mul64(s.rand64(), uint64(n))
	return int(hi)
}

// Now returns r.Now, or the pool's clock when it is zero.
func (s *Set) Now(r *Request) time.Time {
	if r != nil && !r.Now.IsZero() {
		return r.Now
	}
	return s.clock.Now()
}

// TotalInFlight returns the requests in flight in the whole pool, when the pool's
// algorithm asked for it (see [LoadAware]); otherwise 0.
func (s *Set) TotalInFlight() int64 {
	if s.total == nil {
		return 0
	}
	return s.total.Load()
}

// LoadAware is implemented by algorithms that need [Set.TotalInFlight]. The pool then
// keeps a pool-wide in-flight counter, which costs two atomic adds per request on a
// shared cache line, so it is kept only for algorithms that ask.
type LoadAware interface {
	NeedsTotalInFlight() bool
}
