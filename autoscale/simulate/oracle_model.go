package simulate

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// oracleReq is a request as the oracle plans it: its arrival t, how long d it holds a
// pooled slot, and the longest it may wait for one, its slack (negative: it violates
// the SLO whatever the replicas, and its wait is free).
type oracleReq struct{ t, d, slack int64 }

// demand draws a run's admitted requests, second by second, as the oracle sees them:
// the run's arrivals (same generators, same seed), less those its tenant quotas
// throttle, each with what it asks of a replica under the service model.
type demand struct {
	arr   *merged
	next  int64
	who   int // tenant of next
	more  bool
	quota quotas
	names []string  // tenants' names, for the quotas
	start time.Time // the run's start, for the quotas' buckets

	changes []Change // sorted by At, those not yet in force
	dist    Distribution
	conc    int
	svcRng  *rand.Rand
	slow    Slowdown
	slo     int64

	llm    *LLM // nil: the request–slot model
	prompt sampler
	output sampler
	tokRng *rand.Rand
	points map[int]llmPoint // by concurrency
}

func newDemand(sc Scenario, seed uint64, start time.Time) *demand {
	svc := sc.Service.withDefaults()
	d := &demand{
		arr: arrivalsFor(sc, seed), start: start,
		changes: slices.Clone(sc.Changes), dist: svc.ServiceTime, conc: svc.Concurrency,
		svcRng: serviceRand(seed), slow: svc.Slowdown, slo: int64(cmp.Or(sc.SLO, DefaultSLO)),
	}
	slices.SortStableFunc(d.changes, func(a, b Change) int { return cmp.Compare(a.At, b.At) })
	if mix, ok := sc.Traffic.(Mix); ok {
		// The run's admission asks the same quotas, once per arrival, in arrival order:
		// the oracle replays those asks on a twin of the buckets.
		if d.quota = newQuotas(mix); d.quota != nil {
			for _, t := range mix {
				d.names = append(d.names, t.Name)
			}
		}
	}
	if svc.LLM != nil {
		l := *svc.LLM
		// The run draws a request's tokens when it is first dispatched, from this
		// stream (newLLM), prompt then output: in arrival order when none waits.
		d.llm, d.prompt, d.output, d.tokRng = &l, l.Prompt.sampler(), l.Output.sampler(), rand.New(rand.NewPCG(seed, 6))
		d.points = map[int]llmPoint{}
	}
	d.next, d.who, d.more = d.arr.next()
	return d
}

// second returns the requests arriving in second i (which must follow the last asked)
// and the pooled slots a replica contributes then.
func (d *demand) second(i int) ([]oracleReq, int) {
	const sec = int64(time.Second)
	end := int64(i+1) * sec
	for len(d.changes) > 0 && int64(d.changes[0].At) < end {
		if d.changes[0].ServiceTime != nil {
			d.dist = d.changes[0].ServiceTime
		}
		if d.changes[0].Concurrency > 0 {
			d.conc = d.changes[0].Concurrency
		}
		d.changes = d.changes[1:]
	}
	var reqs []oracleReq
	slots, factor := d.conc, 1.0
	var pt llmPoint
	switch {
	case d.llm != nil:
		var ok bool
		if pt, ok = d.points[d.conc]; !ok {
			pt = d.llm.operating(d.conc)
			d.points[d.conc] = pt
		}
		slots = pt.n
	case !d.slow.IsZero():
		slots, factor = d.slow.slots(d.conc)
	}
	for ; d.more && d.next < end; d.next, d.who, d.more = d.arr.next() {
		if d.quota != nil {
			if ok, _ := d.quota.AllowN(d.names[d.who], d.start.Add(time.Duration(d.next)), 1); !ok {
				continue // throttled: answered 429 at the gateway, served by no replica
			}
		}
		if d.llm != nil {
			p, o := d.prompt.draw(d.tokRng), d.output.draw(d.tokRng)
			reqs = append(reqs, pt.request(d.next, p, o))
			continue
		}
		s := max(int64(float64(d.dist.Sample(d.svcRng))*factor), 0)
		reqs = append(reqs, oracleReq{t: d.next, d: s, slack: d.slo - s})
	}
	return reqs, slots
}

// slots returns how many of a replica's concurrency slots the oracle fills under
// slowdown s, and the service time's factor there: the count that serves the most
// requests per second when every slot is busy (k over the factor at k/concurrency),
// the fewest of those that tie. Up to the knee the factor is 1 and throughput grows
// with k; above it, it grows only if the factor rises slower than k. For a linear
// slowdown of Linear = 1/Knee − 1 (the standard scenario's: ×2 at full from 50%) it is
// flat from the knee on, so running hotter than the knee buys no throughput and costs
// latency: the oracle stops at the knee. The factor is that of the fullest slot, so
// every request is given at least its run's time while its replica holds k.
func (s Slowdown) slots(conc int) (int, float64) {
	best, rate := conc, 0.0
	for k := 1; k <= conc; k++ {
		if r := float64(k) / s.Factor(float64(k)/float64(conc)); r > rate*(1+1e-9) {
			best, rate = k, r
		}
	}
	return best, s.Factor(float64(best) / float64(conc))
}

// llmPoint is the oracle's operating point of an LLM replica: n sequences in its batch,
// a step of n sequences lasting step, and each sequence's time per output token tpot
// when the batch stays full (ns).
type llmPoint struct {
	n                  int
	step, tpot, perTok float64
	ttft               float64 // the TTFT SLO
	tpotSLO            float64
	rate               float64 // requests per second a full replica serves
}

// operating returns the batch that serves the most requests per second with a full
// batch whose time per output token stays within the SLO, under the step model
// (llm.go): with n sequences, a step lasts s = StepBase + n·StepPerSeq, plus the
// prompts it prefills at PrefillRate. A full replica's batch turns over: a mean
// request holds its sequence for h = a + s + (Ō−1)·T, with a = P̄/PrefillRate, so
// the replica admits λ = n/h requests a second and spends ρ = λ·a of each second
// prefilling, stalling every other sequence; the rest goes in decode steps of s, so
// T = s/(1−ρ). Solving for T gives
//
//	(Ō−1)·T² + (b − n·a − (Ō−1)·s)·T − s·b = 0,   b = a + s,
//
// the positive root. A batch qualifies when T plus two standard deviations of a mean
// request's TPOT (its decode meets a Poisson number of other requests' prefills, each
// stalling it a) is within the SLO. The batch is at most the concurrency and as many
// mean requests as the KV cache holds. When even one sequence breaks the TPOT SLO, it
// is 1.
func (l LLM) operating(conc int) llmPoint {
	a := l.Prompt.Mean / l.PrefillRate
	m := max(l.Output.Mean-1, 1e-3)
	nmax := conc
	if l.TokenBudget > 0 {
		nmax = min(nmax, int(float64(l.TokenBudget)/(l.Prompt.Mean+l.Output.Mean)))
	}
	nmax = max(nmax, 1)
	pt := llmPoint{ttft: float64(l.TTFT), tpotSLO: float64(l.TPOT), perTok: float64(time.Second) / l.PrefillRate}
	for n := 1; n <= nmax; n++ {
		s := (l.StepBase + time.Duration(n)*l.StepPerSeq).Seconds()
		b := a + s
		q := b - float64(n)*a - m*s
		t := (-q + math.Sqrt(q*q+4*m*s*b)) / (2 * m)
		rate := float64(n) / (b + m*t)
		// A mean request's decode meets some rate·(Ō−1)·T prefills, as many as
		// Poisson's: two standard deviations of their stall over its tokens keep most
		// requests' TPOT, not just the mean's, within the SLO.
		sd := a * math.Sqrt(rate*m*t) / m
		if n > 1 && (t+2*sd)*float64(time.Second) > float64(l.TPOT) {
			continue
		}
		if rate > pt.rate {
			pt.n, pt.step, pt.tpot, pt.rate = n, s*float64(time.Second), t*float64(time.Second), rate
		}
	}
	return pt
}

// request returns a request arriving at t with p prompt and o output tokens at
// operating point pt: it holds a sequence for its prefill step (the step's base and
// its prompt) and o−1 tokens at pt's TPOT. It may wait for a sequence as long as its
// TTFT allows after waiting out the running step (about one TPOT) and its own prefill
// step, but no longer than a full replica takes, on average, to free one sequence
// (1/rate, about 0.4 s in llm-serving). The pool's wait is for the first sequence to
// free anywhere; in the run a request that finds its replica full waits in that
// replica's queue, which no other replica serves, for that replica's own sequences to
// end, one every 1/rate. Allowing the pool the whole TTFT slack (some 1.8 s) lets it
// run every batch full, and a request that meets a full replica then waits several
// turnovers: on llm-serving, seed 1, 3.7% of requests over the TTFT SLO at 5% fewer
// replica-seconds, against 0.03% with the cap.
func (pt llmPoint) request(t int64, p, o int32) oracleReq {
	first := pt.step + float64(p)*pt.perTok
	return oracleReq{
		t:     t,
		d:     int64(first + float64(o-1)*pt.tpot),
		slack: int64(min(pt.ttft-first-pt.tpot, float64(time.Second)/pt.rate)),
	}
}
