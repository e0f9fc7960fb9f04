package simulate

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Sample is one second of a run's timeline.
type Sample struct {
	// T is the second's start, from the run's start.
	T time.Duration
	// Offered is the profile's expected rate for the second, in requests per second.
	Offered float64
	// Arrivals, Served, Shed, Failed and Slow count the second's requests: arrived;
	// ended successfully; rejected by admission; ended in failure (500, 503, timeout,
	// crash); served but slower than the SLO.
	Arrivals, Served, Shed, Failed, Slow uint64
	// P50 and P99 are the latency quantiles of the requests that ended in the second
	// (failures included), zero when none did.
	P50, P99 time.Duration
	// Replicas is the spec count at the second's end (starting and ready), Ready those
	// serving, Draining those removed and still billed; Desired is the loop's last
	// decision (-1 before the first).
	Replicas, Ready, Draining, Desired int
	// InFlight is the requests in flight at the second's end (in service or waiting),
	// Queued those waiting.
	InFlight, Queued int
	// ReplicaSeconds is the cost so far.
	ReplicaSeconds float64
	// Limit is the route's adaptive concurrency limit at the second's end (the
	// limit its priority classes share; see [Scenario.Adaptive]), or a [Limiter]
	// admitter's; 0 without one. It is not in the CSV.
	Limit int
}

// Violations returns the second's SLO-violating requests: shed, failed or slow.
func (s Sample) Violations() uint64 { return s.Shed + s.Failed + s.Slow }

// ScaleEvent is a change of the spec count that the loop applied.
type ScaleEvent struct {
	At       time.Duration
	From, To int
}

// Reaction is how the policy reacted to one load change: a move of the offered rate's
// 10 s mean by at least half (up or down) from its level at the previous change, and by
// at least half a replica's capacity; changes less than a minute apart are merged.
type Reaction struct {
	// At is when the change began: the first second, within the 10 s mean that
	// crossed the threshold, at which the offered rate itself crossed it (or the
	// start of the run of crossing seconds that holds it). For a step it is the
	// step's second.
	At time.Duration
	// Up is true for a rise.
	Up bool
	// From is the 10 s mean rate before the change; To the level it settled at: the
	// extreme the 10 s mean reached before it turned back by a change's threshold
	// (for a step, the new rate; noise that turns back less is not a new level), at
	// the end of the merged change.
	From, To float64
	// After is, for a rise, the time from At until ready capacity (ready replicas ×
	// concurrency / mean service time) covered the offered rate for 10 s in a row and
	// through the second the load settled (so keeping up with the start of a ramp
	// and falling behind later does not count); for a fall, the time until the first
	// scale-down. Negative when it never happened
	// before the next change or the run's end.
	After time.Duration
}

// Summary is what a run comes to. Its String is byte-identical for the same seed and
// configuration.
type Summary struct {
	Scenario, Policy string
	Seed             uint64
	Duration         time.Duration
	SLO              time.Duration
	// Requests arrived; Served ended successfully; Shed were rejected by admission;
	// Failed ended in failure; Slow were served slower than the SLO.
	Requests, Served, Shed, Failed, Slow uint64
	// Violations = Shed + Failed + Slow: the SLO-violating requests.
	Violations uint64
	// ViolationRate is Violations over Requests (0 without requests).
	ViolationRate float64
	// P50, P99 and Max are latency over every request that was not shed.
	P50, P99, Max time.Duration
	// ReplicaSeconds is the cost: the integral of billed replicas (starting, ready and
	// draining) over time.
	ReplicaSeconds float64
	// MeanReplicas is ReplicaSeconds over the duration; PeakReplicas the most billed
	// at once.
	MeanReplicas float64
	PeakReplicas int
	// ScaleEvents counts applied changes; Flaps the reversals of direction within the
	// flap window; FlapWindow is that window.
	ScaleEvents, Flaps int
	FlapWindow         time.Duration
	// Reactions lists the load changes and the reaction to each.
	Reactions []Reaction
	// MeanReaction and MaxReaction summarize the reactions to rises (those that
	// never reacted count as the rest of the run); zero when there were none.
	MeanReaction, MaxReaction time.Duration
	// Ticks is the number of loop steps; PolicyErrors those on which the policy failed.
	Ticks, PolicyErrors int
	// Tenants is each tenant's share, in the order of the scenario's [Mix]; nil
	// without one. It is not in String.
	Tenants []TenantSummary
	// ColdArrivals counts the times a request arrived while no replica was ready
	// (once per period without one); FirstLatency and FirstMax are the mean and
	// largest latency of those first requests (failures included).
	ColdArrivals           int
	FirstLatency, FirstMax time.Duration
	// Hold is what the hold queue came to ([Scenario.Hold]); zero without one.
	Hold HoldSummary
	// LLM is what the LLM model came to ([Service.LLM]): tokens, TTFT and TPOT and
	// their SLOs' violations (counted in Slow); zero without one.
	LLM LLMSummary
}

// Result is a run's outcome: its timeline, its scale events and its summary.
type Result struct {
	Summary  Summary
	Timeline []Sample
	Scales   []ScaleEvent
}

func (s *sim) result() *Result {
	sum := Summary{
		Scenario: s.sc.Name, Policy: s.cfg.Policy.Name, Seed: s.cfg.Seed,
		Duration: s.sc.Duration, SLO: s.sc.SLO,
		Requests: s.m.total.arrivals, Served: s.m.total.served, Shed: s.m.total.shed,
		Failed: s.m.total.failed, Slow: s.m.total.slow,
		ReplicaSeconds: s.m.replicaNs / float64(time.Second),
		PeakReplicas:   s.m.maxRep,
		ScaleEvents:    len(s.m.scales),
		FlapWindow:     s.flapW,
		Ticks:          s.steps, PolicyErrors: s.policyErrs,
		Tenants: s.tenantSummaries(),
		P50:     s.m.hist.Quantile(0.5), P99: s.m.hist.Quantile(0.99), Max: s.m.hist.Max(),
		ColdArrivals: s.m.firstN, FirstMax: s.m.firstMax,
		Hold: s.m.holdSummary(),
		LLM:  s.m.llmSummary(),
	}
	if s.m.firstN > 0 {
		sum.FirstLatency = s.m.firstSum / time.Duration(s.m.firstN)
	}
	sum.Violations = sum.Shed + sum.Failed + sum.Slow
	if sum.Requests > 0 {
		sum.ViolationRate = float64(sum.Violations) / float64(sum.Requests)
	}
	sum.MeanReplicas = sum.ReplicaSeconds / s.sc.Duration.Seconds()
	sum.Flaps = Flaps(s.m.scales, s.flapW)
	sum.Reactions = reactions(s.timeline, s.m.scales, s.m.svc.Capacity())
	var n int
	var total time.Duration
	for _, r := range sum.Reactions {
		if !r.Up {
			continue
		}
		d := r.After
		if d < 0 {
			d = s.sc.Duration - r.At
		}
		n++
		total += d
		sum.MaxReaction = max(sum.MaxReaction, d)
	}
	if n > 0 {
		sum.MeanReaction = (total / time.Duration(n)).Round(time.Second)
	}
	return &Result{Summary: sum, Timeline: s.timeline, Scales: s.m.scales}
}

// Flaps counts the reversals of direction in events (up then down, or down then up)
// whose two events are at most window apart.
func Flaps(events []ScaleEvent, window time.Duration) int {
	n := 0
	for i := 1; i < len(events); i++ {
		a, b := events[i-1], events[i]
		if (a.To > a.From) != (b.To > b.From) && b.At-a.At <= window {
			n++
		}
	}
	return n
}

// reactions finds the load changes of a timeline and measures the reaction to each.
func reactions(tl []Sample, scales []ScaleEvent, perReplica float64) []Reaction {
	const (
		smooth = 10 // seconds of the trailing mean
		merge  = 60 // seconds within which changes merge
		hold   = 10 // seconds capacity must cover the load
	)
	if len(tl) == 0 {
		return nil
	}
	mean := make([]float64, len(tl))
	var acc float64
	for i, s := range tl {
		acc += s.Offered
		if i >= smooth {
			acc -= tl[i-smooth].Offered
		}
		mean[i] = acc / float64(min(i+1, smooth))
	}
	var out []Reaction
	var settled []int // per change, the second its 10 s mean settled
	level := mean[0]
	minStep := perReplica / 2
	for i := 1; i < len(tl); i++ {
		m := mean[i]
		up := m >= 1.5*level && m-level >= minStep
		down := m <= level/1.5 && level-m >= minStep
		if !up && !down {
			continue
		}
		crossed := func(rate float64) bool {
			if up {
				return rate >= 1.5*level && rate-level >= minStep
			}
			return rate <= level/1.5 && level-rate >= minStep
		}
		// The change began where the offered rate crossed the threshold, within the
		// window whose mean did (a window whose mean crossed holds such a second), or
		// where the run of crossing seconds holding that second began, after the
		// previous change settled: noisy traffic may cross before the window.
		at := i
		for k := max(i-smooth+1, 0); k <= i; k++ {
			if crossed(tl[k].Offered) {
				at = k
				break
			}
		}
		floor := 0
		if n := len(settled); n > 0 {
			floor = settled[n-1] + 1
		}
		for at > floor && crossed(tl[at-1].Offered) {
			at--
		}
		// It settles at the extreme the mean reaches before it turns back far enough
		// to be a change the other way: noisy traffic wiggles on its way up, and a
		// wiggle is not where the load settled.
		top := i
		for i+1 < len(tl) {
			m := mean[i+1]
			if up && (m <= mean[top]/1.5 && mean[top]-m >= minStep) || !up && (m >= 1.5*mean[top] && m-mean[top] >= minStep) {
				break
			}
			i++
			if up && m > mean[top]*(1+1e-9) || !up && m < mean[top]*(1-1e-9) {
				top = i
			}
		}
		if n := len(out); n > 0 && out[n-1].Up == up && int(out[n-1].At/time.Second)+merge >= at {
			out[n-1].To = mean[top]
			settled[n-1] = top
		} else {
			out = append(out, Reaction{At: time.Duration(at) * time.Second, Up: up, From: level, To: mean[top]})
			settled = append(settled, top)
		}
		level = mean[top]
	}
	for k := range out {
		r := &out[k]
		r.After = -1
		start := int(r.At / time.Second)
		stop := len(tl)
		if k+1 < len(out) {
			stop = int(out[k+1].At / time.Second)
		}
		if r.Up {
			// Covered for hold seconds in a row, through the new level: a run that
			// ends before the load settled (capacity that kept up with the start of a
			// ramp and fell behind) does not count.
			run := 0
			for i := start; i < stop; i++ {
				if float64(tl[i].Ready)*perReplica >= tl[i].Offered {
					run++
					if run >= hold && i >= settled[k] {
						r.After = time.Duration(i-run+1-start) * time.Second
						break
					}
				} else {
					run = 0
				}
			}
			continue
		}
		for _, e := range scales {
			if e.At >= r.At && e.At < time.Duration(stop)*time.Second && e.To < e.From {
				r.After = e.At - r.At
				break
			}
		}
	}
	return out
}

// String returns the summary as "key: value" lines, in a fixed order and format.
func (s Summary) String() string {
	var b strings.Builder
	f := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-16s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	f("scenario", "%s", s.Scenario)
	f("policy", "%s", s.Policy)
	f("seed", "%d", s.Seed)
	f("duration", "%s", s.Duration)
	f("slo", "%s", s.SLO)
	f("requests", "%d", s.Requests)
	f("served", "%d", s.Served)
	f("shed", "%d", s.Shed)
	f("failed", "%d", s.Failed)
	f("slow", "%d", s.Slow)
	f("violations", "%d (%.4f%%)", s.Violations, 100*s.ViolationRate)
	f("p50", "%s", fmtDur(s.P50))
	f("p99", "%s", fmtDur(s.P99))
	f("max", "%s", fmtDur(s.Max))
	f("replica-seconds", "%.0f", s.ReplicaSeconds)
	f("mean replicas", "%.2f", s.MeanReplicas)
	f("peak replicas", "%d", s.PeakReplicas)
	f("scale events", "%d", s.ScaleEvents)
	f("flaps", "%d (window %s)", s.Flaps, s.FlapWindow)
	f("reaction", "mean %s, max %s", s.MeanReaction, s.MaxReaction)
	f("ticks", "%d (%d policy errors)", s.Ticks, s.PolicyErrors)
	if s.ColdArrivals > 0 {
		f("from zero", "%d times, first request mean %s, max %s", s.ColdArrivals, fmtDur(s.FirstLatency), fmtDur(s.FirstMax))
	}
	if h := s.Hold; h != (HoldSummary{}) {
		f("hold queue", "%d held (wait p50 %s, p99 %s), 503 %d full + %d timed out", h.Held, fmtDur(h.WaitP50), fmtDur(h.WaitP99), h.Full, h.TimedOut)
		if h.RetryChecked > 0 {
			f("retry-after", "error mean %s, max %s over %d at zero", fmtDur(h.RetryErrMean), fmtDur(h.RetryErrMax), h.RetryChecked)
		}
	}
	if l := s.LLM; l != (LLMSummary{}) {
		f("tokens", "%d in, %d out", l.InputTokens, l.OutputTokens)
		f("ttft", "p50 %s, p99 %s; %d over %s", fmtDur(l.TTFTP50), fmtDur(l.TTFTP99), l.TTFTSlow, l.TTFTSLO)
		f("tpot", "p50 %s, p99 %s; %d over %s", fmtDur(l.TPOTP50), fmtDur(l.TPOTP99), l.TPOTSlow, l.TPOTSLO)
	}
	for _, r := range s.Reactions {
		dir := "down"
		if r.Up {
			dir = "up"
		}
		after := "never"
		if r.After >= 0 {
			after = r.After.String()
		}
		f("load change", "%s at %s: %.0f -> %.0f rps, reaction %s", dir, r.At, r.From, r.To, after)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// CSVHeader is the header line of [Result.WriteCSV].
const CSVHeader = "t_s,offered_rps,arrivals,served,shed,failed,slow,p50_ms,p99_ms,replicas,ready,draining,desired,in_flight,queued,replica_seconds"

// WriteCSV writes the timeline as CSV, one line per second after [CSVHeader].
func (r *Result) WriteCSV(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, CSVHeader)
	for _, s := range r.Timeline {
		fmt.Fprintf(bw, "%d,%.3f,%d,%d,%d,%d,%d,%.3f,%.3f,%d,%d,%d,%d,%d,%d,%.1f\n",
			int64(s.T/time.Second), s.Offered, s.Arrivals, s.Served, s.Shed, s.Failed, s.Slow,
			ms(s.P50), ms(s.P99), s.Replicas, s.Ready, s.Draining, s.Desired, s.InFlight, s.Queued,
			s.ReplicaSeconds)
	}
	return bw.Flush()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Table renders summaries as a markdown comparison table, in the given order: one row
// per run, grouped by scenario. Where a scenario has a run of [Oracle] (named
// [OracleName]), each of its rows gives its replica-seconds as a ratio to the oracle's
// and its SLO-violating requests above the oracle's, the unavoidable floor (negative
// when a policy violated less, as one that overprovisions through the oracle's first
// seconds can); without one, those columns are "–".
func Table(sums []Summary) string {
	oracles := map[string]Summary{}
	for _, s := range sums {
		if s.Policy == OracleName {
			oracles[s.Scenario] = s
		}
	}
	var b strings.Builder
	b.WriteString("| scenario | policy | requests | SLO violations | violation % | above floor | p50 | p99 | replica-seconds | × oracle | peak | scale events | flaps | reaction mean / max |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sums {
		above, ratio := "–", "–"
		if o, ok := oracles[s.Scenario]; ok {
			above = fmt.Sprintf("%d", int64(s.Violations)-int64(o.Violations))
			if o.ReplicaSeconds > 0 {
				ratio = fmt.Sprintf("%.2f", s.ReplicaSeconds/o.ReplicaSeconds)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.3f | %s | %s | %s | %.0f | %s | %d | %d | %d | %s / %s |\n",
			s.Scenario, s.Policy, s.Requests, s.Violations, 100*s.ViolationRate, above,
			fmtDur(s.P50), fmtDur(s.P99), s.ReplicaSeconds, ratio, s.PeakReplicas, s.ScaleEvents, s.Flaps,
			s.MeanReaction, s.MaxReaction)
	}
	return b.String()
}
