package autoscale

import (
	"errors"
	"time"
)

// ErrNoApplier is recorded for an action whose applier was not registered with the
// loop (for example a SetWeight for a pool the loop does not know).
var ErrNoApplier = errors.New("autoscale: no applier for action")

// The appliers are small interfaces the loop calls to apply actions inside the
// gateway. They are declared here and satisfied structurally by the balancer's pools
// and the middleware's admission, so this package imports neither. The loop calls them
// from its stepping goroutine; they must not block (they set state that the request
// path reads) and must be safe for concurrent use with the request path.

// Pool is a balancer pool the loop can re-weight and eject backends from. The
// balancer's *Pool has exactly these methods. Register one with [WithPool].
type Pool interface {
	// SetWeight sets a backend's weight; 0 drains it.
	SetWeight(backend string, weight int) error
	// Eject takes a backend out of rotation for d.
	Eject(backend string, d time.Duration) error
}

// Shedder rejects a fraction of a route's requests. Register one with [WithShedder].
type Shedder interface {
	// Shed rejects fraction (0..1) of route's requests with a Retry-After of
	// retryAfter (zero: the shedder's own estimate); fraction 0 stops shedding.
	Shed(route string, fraction float64, retryAfter time.Duration) error
}

// PriorityShedder rejects a fraction of one priority class's requests: the applier of
// a [Shed] with Priority set. The middleware's admission is one; when the loop's
// shedder is one too (registered with [WithShedder]) nothing more is needed.
type PriorityShedder interface {
	ShedPriority(class int, fraction float64, retryAfter time.Duration) error
}

// LimitBounder sets the bounds of a route's adaptive concurrency limits: the applier
// of [LimitBounds]. Register one with [WithLimitBounder].
type LimitBounder interface {
	SetLimitBounds(route string, min, max int) error
}

// Throttler limits a tenant's request rate. Register one with [WithThrottler].
type Throttler interface {
	// Throttle sets tenant's token bucket to rps (math.Inf(1): no limit) and burst.
	Throttle(tenant string, rps float64, burst int) error
}

// Scorer sets the weights of a scoring pool's scorers, for [ScoreWeights] actions.
// Register one per pool with [WithScorer]; balancer's *Scoring is one.
type Scorer interface {
	SetScoreWeights(queue, kvCache, inFlight, latency, prefix float64) error
}

// Budgeter sets token budgets, an AI gateway's rate limits in tokens. Register one
// with [WithBudgeter]; middleware/llm's *Budgets is one.
type Budgeter interface {
	// SetTokenRate sets the rate (tokens per minute; 0 removes the rate limit) and
	// burst (0: the rate) of tenant's budget, or with model set of tenant's budget on
	// model, keeping a daily quota it has.
	SetTokenRate(tenant, model string, tokensPerMinute, burst int64) error
}

// Router re-routes a fraction of one route's requests to another. Register one with
// [WithRouter].
type Router interface {
	// Route sends fraction (0..1) of from's requests to to; 0 stops re-routing.
	Route(from, to string, fraction float64) error
}

// Elector says whether this process leads. When several gateway replicas run the same
// loop, only the leader actuates: the others decide and record, with
// [Decision.Why] set to [WhyNotLeader], so a new leader takes over with warm state.
// The gate applies to Scale actions only; actions inside the gateway (weights,
// ejections, shedding, throttling, routing) act on each replica's own state and are
// applied by every replica. IsLeader must not block: an implementation (such as a
// Kubernetes Lease elector) keeps its answer up to date in the background. It must be
// safe for concurrent use.
type Elector interface {
	IsLeader() bool
}

// Fencer is an optional ability of an [Elector]: Term returns the fencing token of
// this replica's leadership, a number that grows with each change of leader (a
// Kubernetes Lease's transitions, for example), or 0 when it does not know. The loop
// reads it at each tick it leads and puts it in each scale request
// ([actuator.Sequence]), beside the loop's own stream name and decision number, so
// that a consumer of queued decisions orders a new leader's decisions after the old
// one's whatever their clocks say. It must not block and must be safe for concurrent
// use.
type Fencer interface {
	Term() uint64
}

// ElectorFunc adapts a function to [Elector].
type ElectorFunc func() bool

// IsLeader calls f; a nil f leads.
func (f ElectorFunc) IsLeader() bool { return f == nil || f() }

var _ Elector = ElectorFunc(nil)
