package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// phase is a stretch of the load's cycle: requests per second for each model.
type phase struct {
	name string
	len  time.Duration
	rps  map[string]float64
}

// tenant is a client of the gateway: its share of the load and its priority.
type tenant struct {
	name     string
	share    float64
	priority int
}

var tenants = [...]tenant{
	{"acme", 0.45, 5},   // a paying customer, interactive
	{"globex", 0.35, 5}, // another
	{"batchco", 0.2, 0}, // a low-priority batch job: its prompts are economy
}

// prompt lengths, in words (about 1.3 tokens each): short chat turns, documents, and
// a few long contexts.
var promptWords = []struct {
	words int
	share float64
}{{30, 0.55}, {400, 0.35}, {2500, 0.10}}

// counts is what the load generator saw, by outcome.
type counts struct {
	Sent, Served, FellBack, BudgetRejected, Shed, Overloaded, Errored int64
}

// loadgen is the built-in client: open-loop Poisson arrivals per model, following
// the phases in a cycle, each request an OpenAI chat completion from a tenant, half of
// them streamed.
type loadgen struct {
	client *http.Client
	url    string
	phases []phase
	max    int // requests in flight at most; beyond, arrivals are dropped (not sent)
	seed   uint64

	inflight                                                  atomic.Int64
	sent, served, fellBack, budget, shed, overloaded, errored atomic.Int64
	budgetBy                                                  [len(tenants)]atomic.Int64 // budget rejections by tenant
	wg                                                        sync.WaitGroup
}

// budgetRejected returns the budget rejections by tenant.
func (l *loadgen) budgetRejected() map[string]int64 {
	m := make(map[string]int64, len(tenants))
	for i, t := range tenants {
		m[t.name] = l.budgetBy[i].Load()
	}
	return m
}

func (l *loadgen) counts() counts {
	return counts{l.sent.Load(), l.served.Load(), l.fellBack.Load(), l.budget.Load(), l.shed.Load(), l.overloaded.Load(), l.errored.Load()}
}

// phaseAt returns the phase at elapsed time t of the cycle.
func (l *loadgen) phaseAt(t time.Duration) phase {
	var cycle time.Duration
	for _, p := range l.phases {
		cycle += p.len
	}
	t %= cycle
	for _, p := range l.phases {
		if t < p.len {
			return p
		}
		t -= p.len
	}
	return l.phases[len(l.phases)-1]
}

// run sends requests until ctx ends, then waits for those in flight.
func (l *loadgen) run(ctx context.Context) {
	defer l.wg.Wait()
	rng := rand.New(rand.NewPCG(l.seed, 7))
	start := time.Now()
	const step = 10 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p := l.phaseAt(now.Sub(start))
			for _, model := range sortedKeys(p.rps) {
				// Poisson arrivals: the count in one step of a rate.
				n := poisson(rng, p.rps[model]*step.Seconds())
				for range n {
					if l.inflight.Load() >= int64(l.max) {
						continue
					}
					body, hdr, who := l.request(rng, model)
					l.inflight.Add(1)
					l.sent.Add(1)
					l.wg.Go(func() {
						defer l.inflight.Add(-1)
						l.send(body, hdr, who)
					})
				}
			}
		}
	}
}

func poisson(rng *rand.Rand, mean float64) int {
	n, p, limit := 0, 1.0, mathExp(-mean)
	for {
		p *= rng.Float64()
		if p <= limit {
			return n
		}
		n++
	}
}

// request makes one chat request for model from a random tenant, and returns that
// tenant's index in tenants.
func (l *loadgen) request(rng *rand.Rand, model string) ([]byte, http.Header, int) {
	x := rng.Float64()
	who := len(tenants) - 1
	for i, c := range tenants {
		if x < c.share {
			who = i
			break
		}
		x -= c.share
	}
	t := tenants[who]
	words := promptWords[len(promptWords)-1].words
	x = rng.Float64()
	for _, w := range promptWords {
		if x < w.share {
			words = w.words
			break
		}
		x -= w.share
	}
	stream := rng.IntN(2) == 0
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"model":%q,"max_tokens":%d,"stream":%t,`, model, 32+rng.IntN(96), stream)
	if stream {
		b.WriteString(`"stream_options":{"include_usage":true},`)
	}
	fmt.Fprintf(&b, `"user":%q,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":%q}]}`,
		t.name, strings.TrimSpace(strings.Repeat("lorem ipsum ", words/2+1)))
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(middleware.TenantHeader, t.name)
	h.Set(priorityHeader, fmt.Sprint(t.priority))
	return b.Bytes(), h, who
}

func (l *loadgen) send(body []byte, hdr http.Header, who int) {
	req, err := http.NewRequest(http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		l.errored.Add(1)
		return
	}
	req.Header = hdr
	res, err := l.client.Do(req)
	if err != nil {
		l.errored.Add(1)
		return
	}
	var errType string
	if res.StatusCode == http.StatusTooManyRequests {
		var e struct {
			Error struct{ Type string } `json:"error"`
		}
		// A body not JSON (the balancer's own 429) is no budget's.
		if json.NewDecoder(res.Body).Decode(&e) == nil {
			errType = e.Error.Type
		}
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		l.errored.Add(1)
	case res.StatusCode == http.StatusOK:
		l.served.Add(1)
		if res.Header.Get(balancer.FallbackHeader) != "" {
			l.fellBack.Add(1)
		}
	case res.StatusCode == http.StatusTooManyRequests && res.Header.Get(budgetHeader) != "" && (errType == "tokens" || errType == "insufficient_quota"):
		// The gateway's token budgets, told from a model server's 429 (which passes
		// through with the budget's headers too) by the error's type, as OpenAI's
		// clients tell a token limit.
		l.budget.Add(1)
		l.budgetBy[who].Add(1)
	case res.Header.Get(middleware.RejectedHeader) != "":
		l.shed.Add(1) // the admission's
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable:
		l.overloaded.Add(1) // every model of the chain full, or none ready
	default:
		l.errored.Add(1)
	}
}

// budgetHeader is set on the gateway's token-budget rejections, as other AI gateways
// do.
const budgetHeader = "X-Ratelimit-Remaining-Tokens"

func mathExp(x float64) float64 { return math.Exp(x) }

func sortedKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
