package simulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// ErrInvalidConfig is returned (wrapped) for a scenario, service, profile or run
// configuration that cannot be simulated.
var ErrInvalidConfig = errors.New("simulate: invalid config")

// A Distribution draws service times. Implementations must be deterministic given the
// random source.
type Distribution interface {
	// Sample draws one duration, >= 0.
	Sample(r *rand.Rand) time.Duration
	// Mean returns the distribution's mean.
	Mean() time.Duration
}

// Fixed is a constant service time.
type Fixed time.Duration

// Sample returns d.
func (d Fixed) Sample(*rand.Rand) time.Duration { return time.Duration(d) }

// Mean returns d.
func (d Fixed) Mean() time.Duration { return time.Duration(d) }

// Exponential is an exponential service time of the given mean.
type Exponential time.Duration

// Sample draws an exponential duration.
func (d Exponential) Sample(r *rand.Rand) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(d))
}

// Mean returns d.
func (d Exponential) Mean() time.Duration { return time.Duration(d) }

// LogNormal is a log-normal service time with the given mean and coefficient of
// variation (standard deviation over mean): the usual shape of request latencies. Make
// it with [NewLogNormal].
type LogNormal struct {
	mean      time.Duration
	mu, sigma float64
}

// NewLogNormal returns a log-normal distribution of mean (> 0) and coefficient of
// variation cv (>= 0).
func NewLogNormal(mean time.Duration, cv float64) (LogNormal, error) {
	if mean <= 0 || !(cv >= 0) || math.IsInf(cv, 0) {
		return LogNormal{}, fmt.Errorf("%w: log-normal mean %v and cv %v", ErrInvalidConfig, mean, cv)
	}
	s2 := math.Log1p(cv * cv)
	return LogNormal{mean: mean, sigma: math.Sqrt(s2), mu: math.Log(float64(mean)) - s2/2}, nil
}

// Sample draws a log-normal duration.
func (d LogNormal) Sample(r *rand.Rand) time.Duration {
	return time.Duration(math.Exp(d.mu + d.sigma*r.NormFloat64()))
}

// Mean returns the mean.
func (d LogNormal) Mean() time.Duration { return d.mean }

// Pareto is a Pareto (type I) service time with the given mean and tail index
// alpha: P(X > x) = (xm/x)^alpha for x >= xm, where the scale xm = mean×(alpha-1)/alpha
// is the shortest time drawn. Its tail is heavier than any log-normal's: the variance
// is finite only for alpha > 2, the coefficient of variation being
// 1/sqrt(alpha(alpha-2)) (0.89 for alpha 2.5). Draws are capped at [MaxPareto] so a
// tiny uniform cannot overflow a duration. Make it with [NewPareto].
type Pareto struct {
	mean      time.Duration
	xm, alpha float64
}

// MaxPareto caps a [Pareto] draw: one hour, which a draw of mean 100 ms and alpha
// 2.5 reaches with a probability of about 10⁻¹²; the cap lowers the mean by the fraction
// (xm/MaxPareto)^(alpha-1), 7×10⁻⁸ there.
const MaxPareto = time.Hour

// NewPareto returns a Pareto distribution of mean (> 0) and tail index alpha (> 1,
// finite; the mean is infinite at 1 and below).
func NewPareto(mean time.Duration, alpha float64) (Pareto, error) {
	if mean <= 0 || !(alpha > 1) || math.IsInf(alpha, 0) {
		return Pareto{}, fmt.Errorf("%w: Pareto mean %v and alpha %v: want mean > 0 and 1 < alpha < inf", ErrInvalidConfig, mean, alpha)
	}
	return Pareto{mean: mean, alpha: alpha, xm: float64(mean) * (alpha - 1) / alpha}, nil
}

// Sample draws a Pareto duration by inversion: xm / U^(1/alpha), U uniform in (0, 1].
func (d Pareto) Sample(r *rand.Rand) time.Duration {
	v := d.xm / math.Pow(1-r.Float64(), 1/d.alpha)
	if v >= float64(MaxPareto) {
		return MaxPareto
	}
	return time.Duration(v)
}

// Mean returns the mean.
func (d Pareto) Mean() time.Duration { return d.mean }

// Scale returns xm, the shortest time drawn.
func (d Pareto) Scale() time.Duration { return time.Duration(d.xm) }

// Alpha returns the tail index.
func (d Pareto) Alpha() float64 { return d.alpha }

// Empirical draws service times from recorded ones, each equally likely: the
// latencies of a replayed log ([Trace.ServiceTime]). Make it with [NewEmpirical].
type Empirical struct {
	d    []time.Duration
	mean time.Duration
}

// NewEmpirical returns the distribution of samples (at least one, each >= 0); it
// keeps its own copy.
func NewEmpirical(samples []time.Duration) (Empirical, error) {
	if len(samples) == 0 {
		return Empirical{}, fmt.Errorf("%w: empirical distribution of no samples", ErrInvalidConfig)
	}
	var sum float64
	for _, x := range samples {
		if x < 0 {
			return Empirical{}, fmt.Errorf("%w: empirical sample %v is negative", ErrInvalidConfig, x)
		}
		sum += float64(x)
	}
	return Empirical{d: slices.Clone(samples), mean: time.Duration(sum / float64(len(samples)))}, nil
}

// Sample draws one of the samples.
func (d Empirical) Sample(r *rand.Rand) time.Duration { return d.d[r.IntN(len(d.d))] }

// Mean returns the samples' mean.
func (d Empirical) Mean() time.Duration { return d.mean }

// Len returns the number of samples.
func (d Empirical) Len() int { return len(d.d) }

// Service is the model of the scaled service. The zero value of each field means its
// default.
type Service struct {
	// Concurrency is the number of requests one replica serves at once; more wait in
	// its queue. Default 10.
	Concurrency int
	// ServiceTime is how long a replica takes to serve a request. Default log-normal
	// of mean 100 ms and coefficient of variation 0.5. With LLM it is not drawn from:
	// the default is then a fixed time, the mean latency at a full batch.
	ServiceTime Distribution
	// LLM, when set, serves the requests as a language model does, with token counts
	// and continuous batching (see [LLM]); Concurrency is then the maximum batch.
	LLM *LLM
	// Slowdown makes service time grow with the replica's utilisation when a
	// request starts (see [Slowdown]). The zero value is none.
	Slowdown Slowdown
	// QueueDepth is how many requests may wait at one replica; one more is answered
	// with 503 (a failure). Zero means no limit.
	QueueDepth int
	// Timeout is how long a request may wait for a slot (at a replica, or for a first
	// replica when there is none) before its client gives up (a failure). Default 30 s.
	Timeout time.Duration
	// ColdStart is the time from a replica's creation to its first request. Default
	// 10 s; negative means none.
	ColdStart time.Duration
	// ScaleDownDelay is how long a replica removed by a scale-down is still billed
	// (its termination grace period): it takes no new requests but finishes those it
	// has, and costs until both the delay has passed and it is empty. Zero means none.
	ScaleDownDelay time.Duration
	// Replicas is the count at the start. Zero means Min, or 1 when Min is 0 and
	// InitialZero is false.
	Replicas int
	// InitialZero starts the run with no replica (scale from zero). It needs Min 0.
	InitialZero bool
	// Min and Max bound the loop's target. Max zero means 100. Min 0 allows scaling
	// to zero (requests then wait for a first replica: in the hold queue, as at
	// Knative's activator, when the scenario has one ([Scenario.Hold]), else in a
	// buffer of no bound).
	Min, Max int
	// FailureRate is the fraction of served requests that fail (a 500), 0..1.
	FailureRate float64
	// CrashEvery is the mean time between crashes of one ready replica (exponential);
	// a crash fails the replica's requests and the replica restarts (another cold
	// start). Zero means no crashes.
	CrashEvery time.Duration
}

// Service defaults.
const (
	DefaultConcurrency = 10
	DefaultTimeout     = 30 * time.Second
	DefaultColdStart   = 10 * time.Second
	DefaultMaxReplicas = 100
	DefaultSLO         = 500 * time.Millisecond
)

func (s Service) withDefaults() Service {
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.ServiceTime == nil && s.LLM != nil {
		s.ServiceTime = Fixed(max(s.LLM.fullLatency(s.LLM.batch(s.Concurrency)), 1))
	}
	if s.ServiceTime == nil {
		s.ServiceTime, _ = NewLogNormal(100*time.Millisecond, 0.5)
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	switch {
	case s.ColdStart == 0:
		s.ColdStart = DefaultColdStart
	case s.ColdStart < 0:
		s.ColdStart = 0
	}
	if s.Max == 0 {
		s.Max = DefaultMaxReplicas
	}
	if s.Replicas == 0 && !s.InitialZero {
		s.Replicas = max(s.Min, 1)
	}
	return s
}

// Validate reports every problem with the service at once.
func (s Service) Validate() error {
	d := s.withDefaults()
	var errs []error
	if s.Concurrency < 0 || d.Concurrency > 1<<16 {
		errs = append(errs, fmt.Errorf("concurrency %d out of [1, 65536]", s.Concurrency))
	}
	if s.QueueDepth < 0 {
		errs = append(errs, fmt.Errorf("queue depth %d is negative", s.QueueDepth))
	}
	if s.Timeout < 0 || s.ScaleDownDelay < 0 || s.CrashEvery < 0 {
		errs = append(errs, errors.New("negative timeout, scale-down delay or crash interval"))
	}
	if d.ServiceTime.Mean() <= 0 {
		errs = append(errs, fmt.Errorf("mean service time %v is not > 0", d.ServiceTime.Mean()))
	}
	if s.Min < 0 || d.Max < 1 || s.Min > d.Max || d.Max > 10_000 {
		errs = append(errs, fmt.Errorf("min %d and max %d: want 0 <= min <= max <= 10000", s.Min, d.Max))
	}
	if s.Replicas < 0 || d.Replicas > d.Max {
		errs = append(errs, fmt.Errorf("initial replicas %d out of [0, max]", s.Replicas))
	}
	if s.InitialZero && (s.Min != 0 || s.Replicas != 0) {
		errs = append(errs, errors.New("initial zero needs min 0 and replicas 0"))
	}
	if err := s.Slowdown.Validate(); err != nil {
		errs = append(errs, err)
	}
	if s.LLM != nil {
		if err := s.LLM.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("llm: %w", err))
		}
		if !s.Slowdown.IsZero() {
			errs = append(errs, errors.New("llm and slowdown together: an LLM's steps slow with the batch already"))
		}
	}
	if !(s.FailureRate >= 0 && s.FailureRate <= 1) {
		errs = append(errs, fmt.Errorf("failure rate %v out of [0, 1]", s.FailureRate))
	}
	return errors.Join(errs...)
}

// Capacity returns the requests per second one replica serves at full utilisation:
// Concurrency / mean service time. It is the nominal figure: a [Slowdown] lowers what a
// replica serves when full, and Capacity does not count it.
func (s Service) Capacity() float64 {
	d := s.withDefaults()
	return float64(d.Concurrency) / d.ServiceTime.Mean().Seconds()
}

// Scenario is a service under a traffic profile for a time, with an SLO.
type Scenario struct {
	// Name identifies the scenario in tables and file names. Required.
	Name string
	// Description says what it shows, for the comparison table.
	Description string
	// Duration is the simulated time, 1 s..30 days. Required.
	Duration time.Duration
	// Traffic is the profile of arrivals. A [Mix] tags arrivals with tenants; a
	// [*Trace] is replayed. Required.
	Traffic Profile
	// Service is the model of the scaled service.
	Service Service
	// SLO is the latency above which a served request violates the SLO. Default 500 ms.
	SLO time.Duration
	// Admission configures the real admission in front of the service: a fixed
	// concurrency limit (MaxConcurrency; a request over it is shed), rule bounds and
	// TTL. The zero value admits everything. QueueSize must be 0: a queued Admit
	// waits for a slot on the caller's goroutine, which in the simulator is the one
	// that would free it.
	Admission middleware.AdmissionConfig
	// Adaptive, when set, gives the admission adaptive concurrency limits
	// (middleware.WithAdaptiveLimit) per route and priority class; tenants carry
	// their class in [Tenant.Priority]. The admission records the limits' windows in
	// the run's registry, where a policy reads them.
	Adaptive *middleware.AdaptiveConfig
	// Changes change the service's capacity during the run (per-replica concurrency,
	// service time), so a limiter or a policy can be seen to follow a backend that
	// becomes slower.
	Changes []Change
	// Hold, when set, puts a gateway-side hold queue (the real middleware.Activator)
	// between admission and the balancer: a request that finds no free slot among the
	// ready replicas (none ready, or all full) waits there and goes to the balancer's
	// pick when a slot frees or a replica becomes ready, and the held demand wakes
	// the loop at once. Without it, requests wait for a first replica in a buffer and
	// otherwise queue at the replica the balancer picked. The activator's concurrency
	// per replica is the service's at the start ([Change] does not change it).
	Hold *HoldQueue
}

// Validate reports every problem with the scenario at once.
func (sc Scenario) Validate() error {
	var errs []error
	if sc.Name == "" {
		errs = append(errs, errors.New("empty scenario name"))
	}
	if sc.Duration < time.Second || sc.Duration > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("duration %v out of [1s, 30 days]", sc.Duration))
	}
	if sc.Traffic == nil {
		errs = append(errs, errors.New("no traffic profile"))
	}
	if m, ok := sc.Traffic.(Mix); ok {
		if err := m.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if sc.SLO < 0 {
		errs = append(errs, fmt.Errorf("SLO %v is negative", sc.SLO))
	}
	if err := sc.Service.Validate(); err != nil {
		errs = append(errs, err)
	}
	if sc.Admission.QueueSize != 0 {
		errs = append(errs, errors.New("admission queue size must be 0 in the simulator"))
	}
	if err := validateChanges(sc.Changes, sc.Duration); err != nil {
		errs = append(errs, err)
	}
	for _, c := range sc.Changes {
		if c.ServiceTime != nil && sc.Service.LLM != nil {
			errs = append(errs, errors.New("a change of service time does nothing to an LLM: its steps decide"))
			break
		}
	}
	if sc.Hold != nil {
		if err := sc.Hold.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("hold queue: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: scenario %q: %w", ErrInvalidConfig, sc.Name, err)
	}
	return nil
}
