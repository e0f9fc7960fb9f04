package simulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware/llm"
)

// LLM is the model of a replica that serves a language model with continuous
// batching, as vLLM or TGI do. A request carries a prompt and an output token count,
// drawn from [Tokens] distributions when it is first dispatched. A replica runs up to
// [Service.Concurrency] sequences at once (its maximum batch), whose prompts and
// output allowances must fit in its KV cache ([LLM.TokenBudget]); a request that does
// not fit waits in the replica's queue, first in first out.
//
// A replica works in steps while it has sequences. A step runs every sequence that
// was in the batch when it began: those that joined since the last step are
// prefilled (their whole prompt; the step waits for it, as without chunked prefill)
// and give their first token, the others decode one token. A step of n sequences
// with p prompt tokens to prefill lasts
//
//	StepBase + n·StepPerSeq + p / PrefillRate
//
// so a fuller batch makes more tokens per second (n tokens a step) and each
// sequence's tokens slower (time per output token grows with n), and a long prompt
// stalls the batch. A request's time to first token (TTFT) runs from its arrival to
// the end of its prefill step, queueing included; its time per output token (TPOT)
// is (end − first token) / (output − 1). A request ends when its last token is made.
//
// A served request violates the SLO (it is [Summary.Slow]) when its TTFT exceeds
// [LLM.TTFT] or its TPOT exceeds [LLM.TPOT]; the scenario's latency SLO is not used.
// The policy's [Env.SLO] is TTFT + TPOT × the mean output: the latency of a mean
// request that just meets both. [Env.ServiceTime] is the mean latency at a full batch
// (Concurrency, or as many mean requests as the KV cache holds), so that
// [Env.Capacity] is what a replica serves when full.
//
// A served request is recorded as the LLM gateway (package middleware/llm) records
// one: its route, tenant and model ([metrics.ScopeModel], keyed by [LLM.Model])
// windows carry its tokens, input and output, as the observation's Value; the
// model's llm.ScopeTTFT and llm.ScopeTPOT windows its TTFT and TPOT as latency; and
// llm.ScopeInputTokens and llm.ScopeOutputTokens its tokens as Value (with the tenant
// twins of all four when the traffic is a [Mix]). A policy reads them from the
// tick's snapshot, a Lua one with m.scope.
type LLM struct {
	// Model names the model: the key of its windows. Default "llm".
	Model string
	// Prompt and Output are the requests' token counts. Required.
	Prompt, Output Tokens
	// PrefillRate is the prompt tokens per second a replica prefills. Required.
	PrefillRate float64
	// StepBase is a decode step's time for one sequence; StepPerSeq what each
	// sequence in the step adds. StepBase is required.
	StepBase, StepPerSeq time.Duration
	// TokenBudget is a replica's KV cache in tokens: the running sequences' prompts
	// and output allowances together stay within it. It needs Prompt.Max and
	// Output.Max, whose sum it must hold. Zero means no limit beyond the batch.
	TokenBudget int
	// TTFT and TPOT are the SLOs on time to first token and time per output token.
	// Required.
	TTFT, TPOT time.Duration
}

// Tokens is a log-normal distribution of token counts of the given mean and
// coefficient of variation, rounded and held to [Min, Max].
type Tokens struct {
	Mean float64
	// CV is the standard deviation over the mean; 0 gives Mean every time.
	CV float64
	// Min (>= 1) and Max (>= Min) bound a draw. Zero Min means 1, zero Max 1,000,000.
	Min, Max int
}

func (d Tokens) bounds() (lo, hi int) {
	lo, hi = max(d.Min, 1), d.Max
	if hi == 0 {
		hi = 1_000_000
	}
	return lo, hi
}

func (d Tokens) validate(name string) error {
	lo, hi := d.bounds()
	if !(d.Mean >= 1 && d.Mean <= 1e6) || !(d.CV >= 0 && d.CV <= 10) || d.Min < 0 || hi < lo || hi > 1_000_000 {
		return fmt.Errorf("%s tokens: mean %v, cv %v, min %d, max %d: want mean in [1, 1e6], cv in [0, 10], 1 <= min <= max <= 1e6",
			name, d.Mean, d.CV, d.Min, d.Max)
	}
	return nil
}

// sampler draws from a Tokens distribution.
type sampler struct {
	mu, sigma float64
	lo, hi    int32
}

func (d Tokens) sampler() sampler {
	s2 := math.Log1p(d.CV * d.CV)
	lo, hi := d.bounds()
	return sampler{mu: math.Log(d.Mean) - s2/2, sigma: math.Sqrt(s2), lo: int32(lo), hi: int32(hi)}
}

func (s sampler) draw(r *rand.Rand) int32 {
	v := math.Round(math.Exp(s.mu + s.sigma*r.NormFloat64()))
	return int32(min(max(v, float64(s.lo)), float64(s.hi)))
}

// Validate reports every problem with l.
func (l LLM) Validate() error {
	var errs []error
	for _, e := range []error{l.Prompt.validate("prompt"), l.Output.validate("output")} {
		if e != nil {
			errs = append(errs, e)
		}
	}
	if !(l.PrefillRate > 0) || math.IsInf(l.PrefillRate, 0) {
		errs = append(errs, fmt.Errorf("prefill rate %v is not finite and > 0", l.PrefillRate))
	}
	if l.StepBase <= 0 || l.StepPerSeq < 0 {
		errs = append(errs, fmt.Errorf("step base %v and per sequence %v: want > 0 and >= 0", l.StepBase, l.StepPerSeq))
	}
	if l.TokenBudget < 0 {
		errs = append(errs, fmt.Errorf("token budget %d is negative", l.TokenBudget))
	} else if l.TokenBudget > 0 && (l.Prompt.Max == 0 || l.Output.Max == 0 || l.TokenBudget < l.Prompt.Max+l.Output.Max) {
		// A request larger than the cache would never start, and block its queue.
		errs = append(errs, fmt.Errorf("token budget %d: want prompt and output maxima (%d and %d) set and within it",
			l.TokenBudget, l.Prompt.Max, l.Output.Max))
	}
	if l.TTFT <= 0 || l.TPOT <= 0 {
		errs = append(errs, fmt.Errorf("TTFT SLO %v and TPOT SLO %v must be > 0", l.TTFT, l.TPOT))
	}
	return errors.Join(errs...)
}

// batch returns the sequences a full replica runs: the batch limit, or as many mean
// requests as the KV cache holds.
func (l LLM) batch(concurrency int) float64 {
	b := float64(concurrency)
	if l.TokenBudget > 0 {
		b = min(b, float64(l.TokenBudget)/(l.Prompt.Mean+l.Output.Mean))
	}
	return max(b, 1)
}

// fullLatency returns the mean latency of a request at a full batch of b: by
// Little's law b over what a full replica serves per second, which spends, per
// request, its prefill (the batch waits) and its share of the output's steps.
func (l LLM) fullLatency(b float64) time.Duration {
	step := l.StepBase.Seconds() + b*l.StepPerSeq.Seconds()
	perReq := l.Prompt.Mean/l.PrefillRate + l.Output.Mean*step/b
	return time.Duration(b * perReq * float64(time.Second))
}

// slo returns the end-to-end latency objective a policy is given.
func (l LLM) slo() time.Duration {
	return l.TTFT + time.Duration(l.Output.Mean*float64(l.TPOT))
}

// Request phases in a replica's batch.
const (
	phaseNone    uint8 = iota // not in a batch
	phaseJoined               // in the batch, waiting for the next step's prefill
	phasePrefill              // being prefilled by the running step
	phaseDecode               // generating
)

// llmModel is the run's LLM state.
type llmModel struct {
	cfg            LLM
	prompt, output sampler
	budget         int // 0: no KV limit
	base, perSeq   float64
	perToken       float64 // prefill ns per token
	rng            *rand.Rand
	ttft, tpot     *metrics.Window
	in, out        *metrics.Window
	tenants        []llmWindows // per tenant, when the traffic is a Mix
	sum            LLMSummary
	ttftH, tpotH   metrics.Histogram
}

type llmWindows struct{ ttft, tpot, in, out *metrics.Window }

// newLLM sets the model up for a run: its draws, and its windows in reg beside the
// route's and tenants' (mix says whether the traffic has tenants).
func (m *model) newLLM(cfg LLM, reg *metrics.Registry, seed uint64, mix bool) {
	cfg.Model = cmpOr(cfg.Model, "llm")
	l := &llmModel{
		cfg: cfg, prompt: cfg.Prompt.sampler(), output: cfg.Output.sampler(), budget: cfg.TokenBudget,
		base: float64(cfg.StepBase), perSeq: float64(cfg.StepPerSeq), perToken: float64(time.Second) / cfg.PrefillRate,
		rng:  rand.New(rand.NewPCG(seed, 6)), // the oracle draws the same tokens (newDemand)
		ttft: reg.Window(llm.ScopeTTFT, cfg.Model), tpot: reg.Window(llm.ScopeTPOT, cfg.Model),
		in: reg.Window(llm.ScopeInputTokens, cfg.Model), out: reg.Window(llm.ScopeOutputTokens, cfg.Model),
	}
	l.sum.TTFTSLO, l.sum.TPOTSLO = cfg.TTFT, cfg.TPOT
	model := reg.Window(metrics.ScopeModel, cfg.Model)
	for k := range m.windows {
		m.windows[k].Model = model
		if mix {
			n := m.tnames[k]
			l.tenants = append(l.tenants, llmWindows{
				ttft: reg.Window(llm.ScopeTenantTTFT, n), tpot: reg.Window(llm.ScopeTenantTPOT, n),
				in: reg.Window(llm.ScopeTenantInputTokens, n), out: reg.Window(llm.ScopeTenantOutputTokens, n),
			})
		}
	}
	m.llm = l
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fits reports whether request i may take a slot at rep now.
func (m *model) fits(rep *replica, i int32) bool {
	if rep.busy >= m.conc {
		return false
	}
	if m.llm == nil || m.llm.budget == 0 {
		return true
	}
	r := &m.reqs[i]
	return rep.kv+int(r.prompt+r.output) <= m.llm.budget
}

// drawTokens gives request r its token counts, once.
func (m *model) drawTokens(r *request) {
	if r.prompt == 0 {
		r.prompt, r.output = m.llm.prompt.draw(m.llm.rng), m.llm.output.draw(m.llm.rng)
	}
}

// join puts request i, just given a slot at replica ri, into its batch, and starts a
// step if the replica is idle.
func (m *model) join(i, ri int32, t int64) {
	r := &m.reqs[i]
	rep := m.reps[ri]
	r.left, r.phase = r.output, phaseJoined
	rep.kv += int(r.prompt + r.output)
	if !rep.stepping {
		m.startStep(ri, t)
	}
}

// startStep begins a step of replica ri at t with the sequences in its batch.
func (m *model) startStep(ri int32, t int64) {
	rep := m.reps[ri]
	l := m.llm
	n, prefill := 0, 0
	for _, i := range rep.slots {
		if i < 0 {
			continue
		}
		r := &m.reqs[i]
		if r.phase == phaseJoined {
			r.phase = phasePrefill
			prefill += int(r.prompt)
		}
		n++
	}
	d := l.base + float64(n)*l.perSeq + float64(prefill)*l.perToken
	rep.stepping = true
	m.eng.schedule(event{t: t + int64(d), kind: evStep, idx: ri, gen: rep.stepGen})
}

// endStep ends replica ri's step at t: every sequence of the step makes a token, and
// those that made their last one complete. The next step starts at once if the batch
// is not empty.
func (m *model) endStep(ri int32, gen uint32, t int64) {
	rep := m.reps[ri]
	if rep.stepGen != gen || !rep.stepping {
		return
	}
	for _, i := range rep.slots {
		if i < 0 {
			continue
		}
		r := &m.reqs[i]
		switch r.phase {
		case phasePrefill:
			r.firstAt, r.phase = t, phaseDecode
		case phaseDecode:
		default:
			continue
		}
		if r.left--; r.left == 0 {
			// complete may fill the freed slot from the queue: the newcomer joins
			// (phaseJoined) and is not part of this step.
			m.complete(i, t)
		}
	}
	rep.stepping = false
	if rep.busy > 0 && rep.state != repFree {
		m.startStep(ri, t)
	}
}

// stopSteps ends replica rep's batch (a crash): its step event is void.
func (rep *replica) stopSteps() {
	rep.stepping, rep.kv = false, 0
	rep.stepGen++
}

// llmServed records served request r's tokens, TTFT and TPOT at t and reports whether
// it violates the SLO.
func (m *model) llmServed(r *request, t int64) bool {
	l := m.llm
	now := m.eng.at(t)
	ttft := time.Duration(r.firstAt - r.arrive)
	var tpot time.Duration
	if r.output > 1 {
		tpot = time.Duration(t-r.firstAt) / time.Duration(r.output-1)
	}
	win := llmWindows{l.ttft, l.tpot, l.in, l.out}
	for k, w := range [2]llmWindows{win, {}} {
		if k == 1 {
			if l.tenants == nil {
				break
			}
			w = l.tenants[r.tenant]
		}
		w.ttft.RecordAt(now, metrics.Observation{Latency: ttft})
		if r.output > 1 {
			w.tpot.RecordAt(now, metrics.Observation{Latency: tpot})
		}
		lat := time.Duration(t - r.arrive)
		w.in.RecordAt(now, metrics.Observation{Latency: lat, Value: float64(r.prompt)})
		w.out.RecordAt(now, metrics.Observation{Latency: lat, Value: float64(r.output)})
	}
	s := &l.sum
	s.InputTokens += uint64(r.prompt)
	s.OutputTokens += uint64(r.output)
	l.ttftH.Record(ttft)
	if r.output > 1 {
		l.tpotH.Record(tpot)
	}
	slowFirst, slowTok := ttft > l.cfg.TTFT, tpot > l.cfg.TPOT
	if slowFirst {
		s.TTFTSlow++
	}
	if slowTok {
		s.TPOTSlow++
	}
	return slowFirst || slowTok
}

// LLMSummary is what the LLM model came to ([Service.LLM]); zero without one.
type LLMSummary struct {
	// InputTokens and OutputTokens are the served requests' tokens.
	InputTokens, OutputTokens uint64
	// TTFTSlow and TPOTSlow count the served requests over each SLO (a request may
	// be over both; [Summary.Slow] counts it once).
	TTFTSlow, TPOTSlow uint64
	// TTFTSLO and TPOTSLO are the SLOs.
	TTFTSLO, TPOTSLO time.Duration
	// The served requests' TTFT and TPOT quantiles.
	TTFTP50, TTFTP99, TPOTP50, TPOTP99 time.Duration
}

func (m *model) llmSummary() LLMSummary {
	if m.llm == nil {
		return LLMSummary{}
	}
	s := m.llm.sum
	s.TTFTP50, s.TTFTP99 = m.llm.ttftH.Quantile(0.5), m.llm.ttftH.Quantile(0.99)
	s.TPOTP50, s.TPOTP99 = m.llm.tpotH.Quantile(0.5), m.llm.tpotH.Quantile(0.99)
	return s
}
