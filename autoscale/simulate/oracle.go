package simulate

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
)

// OracleName is the name of [Oracle] in tables.
const OracleName = "oracle"

// Oracle returns a policy that knows the run's whole future: the baseline the shipped
// policies are measured against, not one of them. It runs only inside [Run] (its
// factory fails elsewhere), on a 1 s tick with no safety layer.
//
// # Construction
//
// Before the run, the oracle draws the run's own arrivals (the same generators on the
// same seed as the run), drops those the admission will throttle (it replays the
// tenants' quotas, [Tenant.Quota], on twins of the run's token buckets: a throttled
// request is answered 429 at the gateway, alike for every policy, and needs no
// replica), and gives each request what it asks of a replica under the service model:
//
//   - the request–slot model: the k-th admitted arrival is paired with the k-th draw
//     of the run's service-time source, the draw that request gets when requests
//     start in the order they arrive, as they do when none waits long. Its slack, the
//     longest it may wait for a slot, is the SLO less its service time.
//   - a [Slowdown]: a replica offers only the k of its slots that serve the most
//     requests per second when all are busy (k over the factor at k/concurrency; the
//     fewest of those that tie), and a request holds one for its draw times the factor
//     at k. Up to the knee the factor is 1, so k reaches the knee at least; above it,
//     k goes higher only where the factor rises slower than k does, so that running
//     hotter serves more with fewer replicas. For the standard linear slowdown
//     (×2 at full from 50%) throughput is flat above the knee, and the oracle stops at
//     the knee: as few replicas as any count above it, at nominal service times.
//   - the LLM model ([LLM]): the requests' prompt and output tokens are drawn from the
//     run's token stream in arrival order (the run draws them at first dispatch).
//     A replica offers n sequences, the batch that serves the most requests per second
//     while full with its time per output token T within the TPOT SLO, T solved from
//     the step model with the prefill stalls a full batch's turnover brings
//     (oracle_model.go has the formula; llm-serving: n = 32, T ≈ 48.7 ms, 2.61 rps a
//     replica). A request holds a sequence for its prefill step and its other output
//     tokens at T, and may wait for one as long as its TTFT SLO allows, but no longer
//     than a full replica takes to free a sequence, since in the run it waits at one
//     replica (see llmPoint.request).
//
// It then plays the requests, second by second, through one pool of slots served
// first come, first served (the hold queue's discipline, with no balancer in the
// way), and gives each second i the fewest replicas need(i) for which no request
// starts later than its slack after it arrived (a request with a negative slack, whose
// own service time exceeds the SLO, violates it whatever the replicas, and takes its
// slot without constraining the count), and whose slots hold all the work in service
// (a replica serving is billed, draining or not). The work the earlier seconds left in
// service carries over, and the count must also carry the next second's arrivals:
// without that look ahead, the fewest replicas for one second leave a backlog that the
// next needs many more to clear, and the counts see-saw. Until the first cold start
// ends only the replicas warm at the start can serve: those seconds are played on at
// most that many, their backlog kept (it violates the SLO, but the seconds after must
// serve it), so that the oracle orders at once what it needs when the first
// replicas can be ready. [Scenario.Changes] apply: the concurrency and service time in
// force in each second.
//
// At a decision at time t, with cold start C and tick T, the oracle asks for
//
//	max { need(i) : second i meets [t, t+C+T) }
//
// within [Min, Max]: the replicas it starts now are ready at t+C and must carry the load
// until the next decision's are ready at t+T+C, and it never removes a replica that a
// second before then needs, since a removed one cannot come back sooner than C.
//
// # Why it is a lower bound, and how far
//
// A replica that serves at time s was started no later than s−C and is billed from then
// to s, so a policy that has need(s) replicas ready at every s bills at least
// max{need(s) : s ∈ [t, t+C]} at every t, and its replica-seconds are at least the
// integral of that. need(s) is what the SLO allows at the least, for the pool is the
// best any placement of requests on replicas can do, and the slack is all the waiting
// the SLO permits (but for an LLM request's, capped as above: that gives up some 5% of
// the bound on llm-serving, where without it the run's balancer misses by far). The oracle bills that integral plus what the tick adds (it looks
// C+T ahead, not C) and the draining of removed replicas. It is a lower bound only
// approximately:
//
//   - need is found greedily, second by second, each with the fewest replicas that
//     clear its arrivals and the next second's; a second given more could leave less
//     work to the next, so the least-cost schedule over the whole run may differ a
//     little (either way), and a second is counted whole where the load may change
//     within it;
//   - the run places requests with the real balancer (power of two choices) on
//     replicas of fixed slots, not in one pool, so a request may wait at a busy replica
//     while another has a free slot: such waits show in the oracle's own violations.
//     Under a [Slowdown] the same misses put a replica above the knee while the pool
//     is at it, and a long draw there exceeds the SLO: on slows-under-load, seed 1,
//     about 0.5% of requests, which one slot under the knee (four of ten) would cut
//     to 0.03% at 23% more replica-seconds; the oracle keeps the knee, the bound;
//   - requests the run sheds, fails or holds shift the pairing of arrivals with draws
//     (the same draws, in another order); under a [Slowdown] a request's factor is
//     that of its replica when it starts, which the pool bounds by the factor at k;
//   - the LLM model is a fluid one: T is the mean over a full batch, where one
//     request's TPOT depends on the prompts prefilled while it decodes (short outputs
//     vary most), the batch is sized on mean token counts against the KV cache, and a
//     prefill step may carry other prompts than the request's own. Such misses show
//     in its violations. A run whose policy sets throttles or sheds of its own meets
//     other admissions than the quotas' (the oracle sets none).
//
// Its violations are the floor the comparison measures the others against: the
// requests whose own service time exceeds the SLO, those the tenants' quotas
// throttle, the arrivals of the first seconds before any replica the oracle orders
// can be ready, and the balancer's misses. A
// policy with fewer replica-seconds than the oracle should be expected to violate the
// SLO more.
//
// The oracle returned is safe for concurrent use: each run builds its own plan.
func Oracle() Policy {
	return Policy{Name: OracleName, Tick: time.Second, Safety: free(), New: newOracle}
}

// future is what a run tells the oracle: its scenario (with its default SLO) and seed.
type future struct {
	sc   Scenario
	seed uint64
}

func newOracle(e Env) (autoscale.Policy, func() error, error) {
	if e.future == nil {
		return nil, nil, fmt.Errorf("%w: the oracle runs only inside simulate.Run", ErrInvalidConfig)
	}
	o := &oracle{
		target: e.Target,
		start:  e.Clock.Now(),
		cold:   max(e.future.sc.Service.withDefaults().ColdStart, 0),
		need:   oracleNeed(e.future.sc, e.future.seed, e.Clock.Now()),
	}
	return o, nil, nil
}

type oracle struct {
	target string
	start  time.Time // the run's start
	cold   time.Duration
	need   []int // per second of the run, the replicas it needs
}

// Decide asks for the most replicas a second in [now, now + cold start + tick) needs.
func (o *oracle) Decide(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
	t := in.Now.Sub(o.start)
	from := int(t / time.Second)
	to := int((t + o.cold + max(in.Tick, time.Second) - 1) / time.Second)
	n := 0
	for i := max(from, 0); i <= to && i < len(o.need); i++ {
		n = max(n, o.need[i])
	}
	if ts, ok := in.Target(o.target); ok {
		n = min(max(n, ts.Min), ts.Max)
	}
	return []autoscale.Action{autoscale.Scale{Target: o.target, Replicas: n, Reason: "oracle"}}, nil
}

// oracleNeed returns, per second of a run of sc with seed from start, the fewest
// replicas whose slots, pooled, serve the admitted arrivals in arrival order with none
// waiting past its slack, through the second and the next at that count, from what
// the earlier seconds, at theirs, left in service.
func oracleNeed(sc Scenario, seed uint64, start time.Time) []int {
	const sec = int64(time.Second)
	svc := sc.Service.withDefaults()
	secs := int((int64(sc.Duration) + sec - 1) / sec)
	need := make([]int, secs)
	dem := newDemand(sc, seed, start)
	cur, curConc := dem.second(0)
	var slots, try, keep, best endHeap // the free times of the pooled slots
	n := 0
	for i := range secs {
		ahead, aheadConc := dem.second(i + 1)
		// fits plays this second and the next on n replicas from the slots as the last
		// second left them, keeping the slots as this second leaves them.
		force := false
		fits := func(n int) bool {
			var held bool
			if try, held = pooled(try, slots, n*curConc, int64(i)*sec); !held && !force {
				return false
			}
			for k, reqs := range [2][]oracleReq{cur, ahead} {
				if k == 1 {
					keep = append(keep[:0], try...)
					if try, held = pooled(try, keep, n*aheadConc, int64(i+1)*sec); !held && !force {
						return false
					}
				}
				for _, r := range reqs {
					if len(try) == 0 {
						return force // forced to no replica: none is served
					}
					start := max(r.t, try[0])
					if r.slack >= 0 && start-r.t > r.slack && !force {
						return false
					}
					try[0] = start + r.d
					try.down()
				}
			}
			return true
		}
		// The count moves little from one second to the next: search from the last,
		// keeping the slots as the fewest that fit leave them.
		ok := func(n int) bool {
			if !fits(n) {
				return false
			}
			best = append(best[:0], keep...)
			return true
		}
		// Before the first cold start ends, only the replicas warm at the start serve.
		top := svc.Max
		if int64(i)*sec < int64(svc.ColdStart) {
			top = svc.Replicas
		}
		n = min(n, top)
		if ok(n) {
			for n > 0 && ok(n-1) {
				n--
			}
		} else {
			for n < top && !ok(n+1) {
				n++
			}
			n = min(n+1, top)
			if !ok(n) {
				// Not even top fits: play the second on top regardless.
				force = true
				fits(n)
				best = append(best[:0], keep...)
			}
		}
		need[i] = n
		slots, best = best, slots
		cur, curConc = ahead, aheadConc
	}
	return need
}

// pooled returns into dst the slots of from resized to n at time t: new slots are free
// at t; removed ones are free ones. It reports whether there were enough: a count
// that cannot hold the work in service at t is too few, for the replicas serving it
// are billed until it ends, draining or not. When it is too few, the slots removed
// are those whose work ends last (they drain).
func pooled(dst, from endHeap, n int, t int64) (endHeap, bool) {
	dst = append(dst[:0], from...)
	if n < len(dst) {
		slices.Sort(dst) // sorted, so a heap
		if k := len(dst) - n; dst[k-1] <= t {
			return append(dst[:0], dst[k:]...), true
		}
		return dst[:n], false
	}
	for len(dst) < n {
		dst = append(dst, t)
	}
	heap.Init(&dst)
	return dst, true
}

// down restores the heap after its least element grew.
func (h endHeap) down() {
	i, n := 0, len(h)
	for {
		m := 2*i + 1
		if m >= n {
			return
		}
		if r := m + 1; r < n && h[r] < h[m] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// endHeap is a min-heap of the end times of requests in service.
type endHeap []int64

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
