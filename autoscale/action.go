package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidAction is returned (wrapped) by an Action's Validate.
var ErrInvalidAction = errors.New("autoscale: invalid action")

// An Action is one thing a policy asks for. The set is closed: [Scale], [SetWeight],
// [Eject], [ScoreWeights], [Shed], [LimitBounds], [Throttle], [Route] and [Budget]. Actions are values; Validate
// reports what is wrong with one, and the loop drops (and records) invalid actions.
type Action interface {
	// Kind names the action: "scale", "set_weight", "eject", "shed", "throttle", "route",
	// "budget".
	Kind() string
	// Validate reports every problem with the action.
	Validate() error
	action()
}

// MaxReplicas bounds every replica count an action may ask for.
const MaxReplicas = 1 << 20

// Scale asks for a target's replicas. The loop's safety layer clamps and delays it.
type Scale struct {
	// Target names a target configured in the loop.
	Target string
	// Replicas is the desired count, 0..MaxReplicas.
	Replicas int
	// Reason says why, for the decision record.
	Reason string
	// Panic declares that the policy is in panic mode (as Knative's autoscaler is when
	// load outruns capacity): while it is set, the loop does not scale the target down.
	Panic bool
}

// SetWeight sets a backend's weight in a pool.
type SetWeight struct {
	Pool, Backend string
	// Weight is the new weight, 0..1,000,000; 0 drains the backend (no new requests).
	Weight int
}

// Eject takes a backend out of a pool's rotation for a while.
type Eject struct {
	Pool, Backend string
	// Duration is how long, more than 0 and at most an hour.
	Duration time.Duration
	Reason   string
}

// Shed rejects a fraction of a route's requests with 503 and a Retry-After.
type Shed struct {
	// Route is the route's key; "*" means every route.
	Route string
	// Fraction of requests to reject, 0..1; 0 stops shedding.
	Fraction float64
	// RetryAfter is the hint given to rejected clients; zero lets the admission compute
	// one from its current state.
	RetryAfter time.Duration
	// Priority, when set, sheds the requests of that priority class, on every
	// route (Route must be "*"), through a [PriorityShedder]: the way a policy sheds
	// the lowest class first.
	Priority *int
}

// ScoreWeights sets the weights of a scoring pool's scorers (balancer.Scoring: filter,
// score, pick) at run time, through the [Scorer] registered under Pool: how much each
// backend's reported queue, KV-cache use, requests in flight, latency and prefix
// affinity count in its score.
type ScoreWeights struct {
	Pool                                      string
	Queue, KVCache, InFlight, Latency, Prefix float64
}

// LimitBounds sets the bounds of a route's adaptive concurrency limits at run time,
// through a [LimitBounder] (the middleware's admission is one).
type LimitBounds struct {
	// Route is the route's key; "*" means every route.
	Route string
	// Min and Max bound the limit, 1 <= Min <= Max <= 1,000,000; 0 and 0 restore the
	// configured bounds.
	Min, Max int
}

// Throttle limits a tenant's request rate with a token bucket.
type Throttle struct {
	Tenant string
	// RPS is the sustained rate; 0 blocks the tenant; math.Inf(1) removes the limit.
	RPS float64
	// Burst is the bucket's size, at least 1 unless RPS is infinite.
	Burst int
}

// Route sends a fraction of one route's requests to another route, or of one model's
// requests to another model (the middleware's admission matches From against both):
// a canary's split, or a cheaper model while an expensive one is saturated.
type Route struct {
	From, To string
	// Fraction of From's requests sent to To, 0..1; 0 stops re-routing.
	Fraction float64
	// Reason says why, for the decision record.
	Reason string
}

// MaxTokensPerMinute bounds a [Budget]'s rate and burst.
const MaxTokensPerMinute = 1 << 50

// Budget sets an AI gateway's token budget for a tenant, or for a tenant on one model:
// a token bucket refilled at TokensPerMinute up to Burst tokens (middleware/llm's
// Budgets apply it). A daily quota the budget has stays as it is.
type Budget struct {
	Tenant string
	// Model, when set, makes it the budget of Tenant's requests for Model; empty is
	// the tenant's across models.
	Model string
	// TokensPerMinute is the refill rate, 0..MaxTokensPerMinute; 0 removes the rate
	// limit.
	TokensPerMinute int64
	// Burst is the bucket's size, 0..MaxTokensPerMinute; 0 means TokensPerMinute.
	Burst int64
}

func (Budget) action()       {}
func (ScoreWeights) action() {}
func (Scale) action()        {}
func (SetWeight) action()    {}
func (Eject) action()        {}
func (Shed) action()         {}
func (LimitBounds) action()  {}
func (Throttle) action()     {}
func (Route) action()        {}

// Kind returns "scale".
func (Scale) Kind() string { return "scale" }

// Kind returns "set_weight".
func (SetWeight) Kind() string { return "set_weight" }

// Kind returns "eject".
func (Eject) Kind() string { return "eject" }

// Kind returns "score_weights".
func (ScoreWeights) Kind() string { return "score_weights" }

// Kind returns "shed".
func (Shed) Kind() string { return "shed" }

// Kind returns "limit_bounds".
func (LimitBounds) Kind() string { return "limit_bounds" }

// Kind returns "throttle".
func (Throttle) Kind() string { return "throttle" }

// Kind returns "route".
func (Route) Kind() string { return "route" }

// Kind returns "budget".
func (Budget) Kind() string { return "budget" }

func invalid(a Action, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidAction, a.Kind(), fmt.Sprintf(format, args...))
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Validate reports every problem with the action.
func (a Scale) Validate() error {
	var errs []error
	if a.Target == "" {
		errs = append(errs, invalid(a, "empty target"))
	}
	if a.Replicas < 0 || a.Replicas > MaxReplicas {
		errs = append(errs, invalid(a, "replicas %d out of [0, %d]", a.Replicas, MaxReplicas))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a SetWeight) Validate() error {
	var errs []error
	if a.Pool == "" || a.Backend == "" {
		errs = append(errs, invalid(a, "empty pool or backend"))
	}
	if a.Weight < 0 || a.Weight > 1_000_000 {
		errs = append(errs, invalid(a, "weight %d out of [0, 1000000]", a.Weight))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a Eject) Validate() error {
	var errs []error
	if a.Pool == "" || a.Backend == "" {
		errs = append(errs, invalid(a, "empty pool or backend"))
	}
	if a.Duration <= 0 || a.Duration > time.Hour {
		errs = append(errs, invalid(a, "duration %v out of (0, 1h]", a.Duration))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a Shed) Validate() error {
	var errs []error
	if a.Route == "" {
		errs = append(errs, invalid(a, "empty route"))
	}
	if !finite(a.Fraction) || a.Fraction < 0 || a.Fraction > 1 {
		errs = append(errs, invalid(a, "fraction %v out of [0, 1]", a.Fraction))
	}
	if a.RetryAfter < 0 || a.RetryAfter > time.Hour {
		errs = append(errs, invalid(a, "retry-after %v out of [0, 1h]", a.RetryAfter))
	}
	if a.Priority != nil && a.Route != "*" {
		errs = append(errs, invalid(a, "a priority class is shed on every route: route %q, want \"*\"", a.Route))
	}
	return errors.Join(errs...)
}

// MaxLimitBound is the largest bound a [LimitBounds] action sets.
const MaxLimitBound = 1_000_000

// Validate reports every problem with the action.
func (a LimitBounds) Validate() error {
	var errs []error
	if a.Route == "" {
		errs = append(errs, invalid(a, "empty route"))
	}
	if a.Min != 0 || a.Max != 0 {
		if a.Min < 1 || a.Max > MaxLimitBound || a.Min > a.Max {
			errs = append(errs, invalid(a, "bounds [%d, %d] not within 1 <= min <= max <= %d", a.Min, a.Max, MaxLimitBound))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a Throttle) Validate() error {
	var errs []error
	if a.Tenant == "" {
		errs = append(errs, invalid(a, "empty tenant"))
	}
	switch {
	case math.IsNaN(a.RPS) || a.RPS < 0 || math.IsInf(a.RPS, -1):
		errs = append(errs, invalid(a, "rps %v is not >= 0", a.RPS))
	case !math.IsInf(a.RPS, 1) && a.Burst < 1:
		errs = append(errs, invalid(a, "burst %d is below 1", a.Burst))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a Route) Validate() error {
	var errs []error
	if a.From == "" || a.To == "" {
		errs = append(errs, invalid(a, "empty from or to"))
	}
	if a.From == a.To && a.From != "" {
		errs = append(errs, invalid(a, "from and to are both %q", a.From))
	}
	if !finite(a.Fraction) || a.Fraction < 0 || a.Fraction > 1 {
		errs = append(errs, invalid(a, "fraction %v out of [0, 1]", a.Fraction))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action: an empty pool, a weight that is
// negative or not finite, or every weight zero.
func (a ScoreWeights) Validate() error {
	var errs []error
	if a.Pool == "" {
		errs = append(errs, invalid(a, "empty pool"))
	}
	ws := [...]struct {
		name string
		v    float64
	}{{"queue", a.Queue}, {"kv_cache", a.KVCache}, {"in_flight", a.InFlight}, {"latency", a.Latency}, {"prefix", a.Prefix}}
	sum := 0.0
	for _, w := range ws {
		if !finite(w.v) || w.v < 0 {
			errs = append(errs, invalid(a, "weight %s %v is negative or not finite", w.name, w.v))
			continue
		}
		sum += w.v
	}
	if sum == 0 && len(errs) == 0 {
		errs = append(errs, invalid(a, "every weight is zero"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the action.
func (a Budget) Validate() error {
	var errs []error
	if a.Tenant == "" {
		errs = append(errs, invalid(a, "empty tenant"))
	}
	if a.TokensPerMinute < 0 || a.TokensPerMinute > MaxTokensPerMinute {
		errs = append(errs, invalid(a, "tokens per minute %d out of [0, %d]", a.TokensPerMinute, int64(MaxTokensPerMinute)))
	}
	if a.Burst < 0 || a.Burst > MaxTokensPerMinute {
		errs = append(errs, invalid(a, "burst %d out of [0, %d]", a.Burst, int64(MaxTokensPerMinute)))
	}
	return errors.Join(errs...)
}
