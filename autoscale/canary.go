package autoscale

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Canary configures a weighted split of a model's requests between its stable version
// and a canary, with an automatic rollback ([NewCanary]). The split is a [Route]
// action from Stable to Canary, which the middleware's admission applies to requests
// whose model is Stable and a balancer.Proxy behind it follows; the verdict reads the
// gateway's own windows of both versions ([metrics.ScopeModel] for errors, TTFT for
// time to first token), the way Flagger and Argo Rollouts compare a canary's metrics
// against thresholds, but relative to the stable version's figures of the same span.
//
// The zero value of each optional field means its default.
type Canary struct {
	// Stable and Canary are the two versions' model names (window keys, and the
	// backends' model labels). Required, distinct.
	Stable, Canary string
	// Weight is the fraction of Stable's requests sent to Canary, in (0, 1].
	Weight float64
	// ErrorMargin is how far the canary's error rate may exceed the stable version's
	// (absolute, 0..1) before a tick counts as worse. Zero means 0.05.
	ErrorMargin float64
	// TTFTMargin is how far the canary's p99 time to first token may exceed the stable
	// version's, as a fraction of it, before a tick counts as worse. Zero means 0.25;
	// negative turns the TTFT comparison off.
	TTFTMargin float64
	// Ticks is how many consecutive worse ticks roll the canary back. Zero means 3.
	Ticks int
	// Span is how much of each window a tick compares. Zero means 30 s.
	Span time.Duration
	// MinRequests is the fewest canary requests (not rejected) in the span for a
	// verdict; below it a tick neither counts as worse nor resets the count. Zero
	// means 10.
	MinRequests int
	// TTFT is the scope of the windows of time to first token, keyed by model. Empty
	// means "ttft", the scope middleware/llm records into.
	TTFT metrics.Scope
}

// Validate reports every problem with c.
func (c Canary) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: canary: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Stable == "" || c.Canary == "" || c.Stable == c.Canary {
		bad("stable %q and canary %q must be two names", c.Stable, c.Canary)
	}
	if !finite(c.Weight) || c.Weight <= 0 || c.Weight > 1 {
		bad("weight %v out of (0, 1]", c.Weight)
	}
	if !finite(c.ErrorMargin) || c.ErrorMargin < 0 || c.ErrorMargin > 1 {
		bad("error margin %v out of [0, 1]", c.ErrorMargin)
	}
	if !finite(c.TTFTMargin) {
		bad("ttft margin %v is not finite", c.TTFTMargin)
	}
	if c.Ticks < 0 || c.Ticks > 1000 {
		bad("ticks %d out of [0, 1000]", c.Ticks)
	}
	if c.Span < 0 {
		bad("negative span %v", c.Span)
	}
	if c.MinRequests < 0 {
		bad("negative min requests %d", c.MinRequests)
	}
	return errors.Join(errs...)
}

// CanaryPolicy is the [Policy] that runs a [Canary]: every tick it asks for the split
// (Route{Stable, Canary, Weight}), until the canary has been worse than the stable
// version for Ticks consecutive ticks; from then on it asks for no split (fraction 0)
// and says why in the action's Reason. With the loop's tick T, traffic is back on the
// stable version within Ticks+1 ticks of the canary turning bad (the tick the windows
// first show it, then Ticks−1 more, then the one that applies). [CanaryPolicy.Resume]
// starts it again. Combine it with a scaling policy through [Combine]; a route rule
// from Stable set by another policy would be replaced by this one's, and the other
// way round.
//
// A CanaryPolicy is safe for concurrent use.
type CanaryPolicy struct {
	cfg Canary

	mu      sync.Mutex
	worse   int
	rolled  bool
	verdict string
}

// NewCanary returns the policy that runs c.
func NewCanary(c Canary) (*CanaryPolicy, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ErrorMargin == 0 {
		c.ErrorMargin = 0.05
	}
	if c.TTFTMargin == 0 {
		c.TTFTMargin = 0.25
	}
	if c.Ticks == 0 {
		c.Ticks = 3
	}
	if c.Span == 0 {
		c.Span = 30 * time.Second
	}
	if c.MinRequests == 0 {
		c.MinRequests = 10
	}
	if c.TTFT == "" {
		c.TTFT = "ttft"
	}
	return &CanaryPolicy{cfg: c}, nil
}

// RolledBack reports whether the canary was rolled back, and why.
func (p *CanaryPolicy) RolledBack() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rolled, p.verdict
}

// Resume sends the canary its share again, with the count of worse ticks at zero.
func (p *CanaryPolicy) Resume() {
	p.mu.Lock()
	p.rolled, p.worse, p.verdict = false, 0, ""
	p.mu.Unlock()
}

// Decide compares the versions' windows and returns the split, or its end.
func (p *CanaryPolicy) Decide(_ context.Context, in *Input) ([]Action, error) {
	c := &p.cfg
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rolled {
		return []Action{Route{From: c.Stable, To: c.Canary, Fraction: 0, Reason: p.verdict}}, nil
	}
	why := p.compare(in)
	switch {
	case why == "":
		p.worse = 0
	case why != "hold":
		p.worse++
		if p.worse >= c.Ticks {
			p.rolled = true
			p.verdict = fmt.Sprintf("canary %s rolled back: %s for %d ticks", c.Canary, why, p.worse)
			return []Action{Route{From: c.Stable, To: c.Canary, Fraction: 0, Reason: p.verdict}}, nil
		}
		return []Action{Route{From: c.Stable, To: c.Canary, Fraction: c.Weight,
			Reason: fmt.Sprintf("canary %s: %s (%d of %d ticks)", c.Canary, why, p.worse, c.Ticks)}}, nil
	}
	return []Action{Route{From: c.Stable, To: c.Canary, Fraction: c.Weight, Reason: fmt.Sprintf("canary %s: %.0f%% of %s", c.Canary, c.Weight*100, c.Stable)}}, nil
}

// compare returns why the canary is worse on this tick, "" when it is not, or "hold"
// when there is too little to tell.
func (p *CanaryPolicy) compare(in *Input) string {
	c := &p.cfg
	cs, _ := in.Metrics.Snapshot(metrics.ScopeModel, c.Canary, c.Span)
	ss, _ := in.Metrics.Snapshot(metrics.ScopeModel, c.Stable, c.Span)
	if served := cs.Count - cs.Rejected; served < uint64(c.MinRequests) {
		return "hold"
	}
	if cs.ErrorRate > ss.ErrorRate+c.ErrorMargin {
		return fmt.Sprintf("error rate %.3g vs stable %.3g", cs.ErrorRate, ss.ErrorRate)
	}
	if c.TTFTMargin > 0 {
		ct, ok1 := in.Metrics.Snapshot(c.TTFT, c.Canary, c.Span)
		st, ok2 := in.Metrics.Snapshot(c.TTFT, c.Stable, c.Span)
		if ok1 && ok2 && ct.Count > 0 && st.Count > 0 && float64(ct.P99) > float64(st.P99)*(1+c.TTFTMargin) {
			return fmt.Sprintf("p99 TTFT %v vs stable %v", ct.P99.Round(time.Millisecond), st.P99.Round(time.Millisecond))
		}
	}
	return ""
}
