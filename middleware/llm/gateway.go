package llm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// Config holds a [Gateway]'s settings. The zero value is the defaults.
type Config struct {
	// MaxBodyBytes caps a request body: a longer one is refused with 413 before it is
	// read further. 0 means 4 MiB (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// TenantHeader names the header that says who a request is charged to; when it
	// is absent the body's user field (OpenAI) or metadata.user_id (Anthropic) is
	// used. "" means X-Tenant-ID ([middleware.TenantHeader]).
	TenantHeader string
	// MaxUsageBytes caps how much of a non-streamed response is kept to read its
	// usage at the end (a stream keeps only its current line, up to the same cap).
	// A larger response passes through whole but settles as if it sent no usage.
	// 0 means 1 MiB.
	MaxUsageBytes int
	// RejectUnknownModels refuses (404) a model that is not in the model table; by
	// default such a request passes and is only estimated.
	RejectUnknownModels bool
	// KeepAcceptEncoding forwards the client's Accept-Encoding upstream. By default
	// the gateway removes it, so that the upstream's response is readable for usage
	// (Go's http.Transport, under httputil.ReverseProxy, then asks for gzip itself
	// and decompresses it transparently). A response the gateway cannot read settles
	// as if it sent no usage.
	KeepAcceptEncoding bool
	// OutputReserve is the output tokens a request without max tokens reserves from
	// its budgets (embeddings reserve none). 0 means 1,024.
	OutputReserve int64
	// Guard is what the context guard does with a request too large for its model's
	// context window. The zero value is GuardRoute.
	Guard GuardMode
}

// DefaultMaxBodyBytes is the default cap on a request body, 4 MiB.
const DefaultMaxBodyBytes = 4 << 20

// GuardMode says what the context guard does with a request whose prompt estimate
// plus its max output tokens exceeds its model's context window.
type GuardMode uint8

const (
	// GuardRoute sends the request to its model's Overflow model (the model field of
	// its body rewritten), or refuses it with 400 when the model has none.
	GuardRoute GuardMode = iota
	// GuardRefuse refuses every such request with 400 (context_length_exceeded).
	GuardRefuse
	// GuardOff lets every request through.
	GuardOff
)

// String names the mode: "route", "refuse" or "off".
func (m GuardMode) String() string {
	switch m {
	case GuardRoute:
		return "route"
	case GuardRefuse:
		return "refuse"
	case GuardOff:
		return "off"
	}
	return fmt.Sprintf("GuardMode(%d)", uint8(m))
}

// ParseGuardMode reads "route", "refuse" or "off".
func ParseGuardMode(s string) (GuardMode, error) {
	switch s {
	case "route":
		return GuardRoute, nil
	case "refuse":
		return GuardRefuse, nil
	case "off":
		return GuardOff, nil
	}
	return 0, fmt.Errorf("llm: guard mode %q is not route, refuse or off", s)
}

// Scopes the gateway records into, each keyed by model (the first of each pair) or by
// tenant (the Tenant one). Token scopes carry the tokens as the observations' Value
// (a snapshot's Value over its Span is tokens per second) and the request's latency;
// ScopeTTFT's latency is the time to first token (the first content event of a stream,
// the first byte of a plain response); ScopeTPOT's is the time per output token of a
// stream after its first; ScopeCost's Value is the request's price by the model table.
const (
	ScopeTTFT               metrics.Scope = "ttft"
	ScopeTenantTTFT         metrics.Scope = "tenant_ttft"
	ScopeTPOT               metrics.Scope = "tpot"
	ScopeTenantTPOT         metrics.Scope = "tenant_tpot"
	ScopeInputTokens        metrics.Scope = "input_tokens"
	ScopeTenantInputTokens  metrics.Scope = "tenant_input_tokens"
	ScopeOutputTokens       metrics.Scope = "output_tokens"
	ScopeTenantOutputTokens metrics.Scope = "tenant_output_tokens"
	ScopeCost               metrics.Scope = "cost"
	ScopeTenantCost         metrics.Scope = "tenant_cost"
)

type options struct {
	registry  *metrics.Registry
	clock     metrics.Clock
	estimator *Estimator
	models    *Models
	hook      middleware.Hook
	budgets   *Budgets
	logger    *slog.Logger
}

// An Option configures [New].
type Option func(*options) error

// WithRegistry sets the registry the gateway records into; the default is a new one,
// reachable through [Gateway.Registry].
func WithRegistry(r *metrics.Registry) Option {
	return func(o *options) error {
		if r == nil {
			return errors.New("llm: nil registry")
		}
		o.registry = r
		return nil
	}
}

// WithClock sets the clock that times requests; the default is the registry's.
func WithClock(c metrics.Clock) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("llm: nil clock")
		}
		o.clock = c
		return nil
	}
}

// WithEstimator sets the token estimator; the default is NewEstimator's defaults.
func WithEstimator(e *Estimator) Option {
	return func(o *options) error {
		if e == nil {
			return errors.New("llm: nil estimator")
		}
		o.estimator = e
		return nil
	}
}

// WithModels sets the model table ([Gateway.SetModels] changes it at run time); the
// default is empty: no context guard, no prices.
func WithModels(m *Models) Option { return func(o *options) error { o.models = m; return nil } }

// WithHook runs h (a Lua on_request through luahttp.Hook, say) after the body is read
// and estimated and before the context guard and the budgets: it sees the model and
// tenant in its keys (and, with luahttp.WithTokens([ContextTokens]), the estimate),
// may reject the request, and may change its tenant or model, in which case the
// body's model is rewritten and the guard checks the new one. Install an on_request
// here or in the inner middleware, not both.
func WithHook(h middleware.Hook) Option { return func(o *options) error { o.hook = h; return nil } }

// WithBudgets enforces token budgets (after the hook and the context guard): a
// request reserves its prompt estimate plus its max output tokens (or
// [Config.OutputReserve]) from its tenant's budgets, is refused with 429 when they
// hold too few, and settles from the reported usage when it ends. Every response to
// a request under a rate limit carries x-ratelimit-limit-tokens,
// x-ratelimit-remaining-tokens and x-ratelimit-reset-tokens, as OpenAI's do; a
// rejection carries Retry-After too and is recorded as rejected
// ([metrics.OutcomeRejected]) in the model's [metrics.ScopeModel] and the tenant's
// [metrics.ScopeTenant] windows, as the admission records its rejections.
func WithBudgets(b *Budgets) Option { return func(o *options) error { o.budgets = b; return nil } }

// WithLogger sets the logger; the default is [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("llm: nil logger")
		}
		o.logger = l
		return nil
	}
}

// Gateway is the LLM layer of a gateway: an http.Handler wrapper that reads each LLM
// API request's body once (bounded), estimates its prompt tokens, runs the hook and
// the context guard, restores the body for the upstream, reads the usage the response
// reports as it streams past, records tokens and times into windows, and calibrates
// the estimator. Requests to other paths, and other methods than POST, pass through
// untouched.
//
// A Gateway is safe for concurrent use; its model table and guard mode change at run
// time.
type Gateway struct {
	cfg    Config
	opts   options
	tenant string // canonical header name
	models atomic.Pointer[Models]
	guard  atomic.Uint32
	pool   sync.Pool // of *exchange
	bufs   sync.Pool // of *bodyBuf
	stats  struct {
		requests, tooLarge, malformed, unknownModel, hookRejected, guardRefused, guardRouted, budgetRejected, noUsage, lied atomic.Uint64
	}
}

// New returns a gateway with cfg's settings, reporting every bad one.
func New(cfg Config, opts ...Option) (*Gateway, error) {
	var errs []error
	if cfg.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("llm: negative max body bytes"))
	}
	if cfg.OutputReserve < 0 {
		errs = append(errs, errors.New("llm: negative output reserve"))
	}
	if cfg.MaxUsageBytes < 0 {
		errs = append(errs, errors.New("llm: negative max usage bytes"))
	}
	if cfg.Guard > GuardOff {
		errs = append(errs, fmt.Errorf("llm: unknown guard mode %d", cfg.Guard))
	}
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxUsageBytes == 0 {
		cfg.MaxUsageBytes = 1 << 20
	}
	if cfg.OutputReserve == 0 {
		cfg.OutputReserve = 1024
	}
	if cfg.TenantHeader == "" {
		cfg.TenantHeader = middleware.TenantHeader
	}
	if o.registry == nil {
		var ropts []metrics.Option
		if o.clock != nil {
			ropts = append(ropts, metrics.WithClock(o.clock))
		}
		reg, err := metrics.NewRegistry(ropts...)
		if err != nil {
			return nil, fmt.Errorf("llm: %w", err)
		}
		o.registry = reg
	}
	if o.clock == nil {
		o.clock = o.registry.Clock()
	}
	if o.estimator == nil {
		o.estimator, _ = NewEstimator(EstimatorConfig{})
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	g := &Gateway{cfg: cfg, opts: o, tenant: textproto.CanonicalMIMEHeaderKey(cfg.TenantHeader)}
	g.models.Store(o.models)
	g.guard.Store(uint32(cfg.Guard))
	g.pool.New = func() any { return newExchange(g) }
	g.bufs.New = func() any { return &bodyBuf{pool: &g.bufs} }
	return g, nil
}

// Registry returns the registry the gateway records into.
func (g *Gateway) Registry() *metrics.Registry { return g.opts.registry }

// Budgets returns the gateway's budgets (nil without).
func (g *Gateway) Budgets() *Budgets { return g.opts.budgets }

// Estimator returns the gateway's token estimator.
func (g *Gateway) Estimator() *Estimator { return g.opts.estimator }

// Models returns the current model table (nil when there is none).
func (g *Gateway) Models() *Models { return g.models.Load() }

// SetModels replaces the model table; nil removes it.
func (g *Gateway) SetModels(m *Models) { g.models.Store(m) }

// SetGuard changes what the context guard does.
func (g *Gateway) SetGuard(m GuardMode) error {
	if m > GuardOff {
		return fmt.Errorf("llm: unknown guard mode %d", m)
	}
	g.guard.Store(uint32(m))
	return nil
}

// Guard returns the context guard's mode.
func (g *Gateway) Guard() GuardMode { return GuardMode(g.guard.Load()) }

// Wrap returns next behind the gateway.
func (g *Gateway) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, next) })
}

// Middleware returns [Gateway.Wrap] as a middleware function.
func (g *Gateway) Middleware() func(http.Handler) http.Handler { return g.Wrap }

// GatewayStats counts what a gateway did.
type GatewayStats struct {
	// Requests is the LLM API requests seen; the others count their fates.
	Requests, TooLarge, Malformed, UnknownModel, HookRejected, GuardRefused, GuardRouted, BudgetRejected uint64
	// NoUsage counts responses that reported no usage; Lied those whose usage had
	// negative or absurd counts.
	NoUsage, Lied uint64
}

// Stats returns the gateway's counts.
func (g *Gateway) Stats() GatewayStats {
	s := &g.stats
	return GatewayStats{
		Requests: s.requests.Load(), TooLarge: s.tooLarge.Load(), Malformed: s.malformed.Load(),
		UnknownModel: s.unknownModel.Load(), HookRejected: s.hookRejected.Load(),
		GuardRefused: s.guardRefused.Load(), GuardRouted: s.guardRouted.Load(), BudgetRejected: s.budgetRejected.Load(),
		NoUsage: s.noUsage.Load(), Lied: s.lied.Load(),
	}
}

// FromRequest returns what the gateway read of r's body, while the request is served
// by a handler behind the gateway; false for a request the gateway passed through.
// (The gateway's restored body carries it, so that no context is allocated; a handler
// that replaces r.Body before this call hides it.)
func FromRequest(r *http.Request) (*Request, bool) {
	if b, ok := r.Body.(*body); ok {
		return &b.x.req, true
	}
	return nil, false
}

// PromptTokens returns the prompt estimate of a request behind the gateway, or 0.
func PromptTokens(r *http.Request) int64 {
	if q, ok := FromRequest(r); ok {
		return q.PromptTokens
	}
	return 0
}

// ContextTokens returns the prompt estimate plus the max output tokens of a request
// behind the gateway, or 0: what it may take of its model's context window. Pass it
// to luahttp.WithTokens to show it to Lua as req.tokens.
func ContextTokens(r *http.Request) int64 {
	if q, ok := FromRequest(r); ok {
		return q.ContextTokens()
	}
	return 0
}

// Classifier wraps base (nil: middleware.DefaultClassifier) so that a middleware
// behind the gateway keys requests by the model and tenant the gateway read.
func Classifier(base middleware.Classifier) middleware.Classifier {
	if base == nil {
		base = middleware.DefaultClassifier()
	}
	return func(r *http.Request) middleware.Keys {
		k := base(r)
		if q, ok := FromRequest(r); ok {
			k.Model = q.Model
			if q.Tenant != "" {
				k.Tenant = q.Tenant
			}
		}
		return k
	}
}

// SetModel rewrites the model of a request behind the gateway: its body's model field
// (the rest of the body unchanged byte for byte), its Content-Length and what
// [FromRequest] returns. r gets a fresh reader of the body from its start; a reader
// handed out before (to an earlier attempt, say) fails from then on. A router that
// falls back to another model calls it before sending the request on. It fails for a
// request the gateway did not read.
func SetModel(r *http.Request, model string) error {
	b, ok := r.Body.(*body)
	if !ok {
		return errors.New("llm: set model: the request did not come through the gateway")
	}
	b.x.setModel(r, model)
	return nil
}
