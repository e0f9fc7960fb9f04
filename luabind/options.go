package luabind

import (
	"errors"
	"log/slog"
	"maps"
	"runtime"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"go.opentelemetry.io/otel/metric"
)

// Hook names a script entry point.
type Hook string

// The hooks a script may define, and the pseudo-hooks errors are reported under.
const (
	HookRequest  Hook = "on_request"
	HookPick     Hook = "pick"
	HookResponse Hook = "on_response"
	HookTick     Hook = "on_tick"
	// HookLoad is the script's main chunk, run when a VM is made.
	HookLoad Hook = "load"
	// HookSelfTest is the script's optional self_test(), run by [New] and [Runtime.Reload].
	HookSelfTest Hook = "self_test"
)

// hookIndex numbers the hooks that are counted; the order is that of allHooks.
const (
	hRequest = iota
	hPick
	hResponse
	hTick
	hLoad
	hSelfTest
	numHooks
)

var _ = [1]int{}[len(allHooksArray)-numHooks] // allHooksArray has numHooks entries

// allHooksArray is immutable (an array, copied on use).
var allHooksArray = [...]Hook{HookRequest, HookPick, HookResponse, HookTick, HookLoad, HookSelfTest}

func hookOf(h Hook) int {
	for i, x := range allHooksArray {
		if x == h {
			return i
		}
	}
	return -1
}

// FailMode says what a hook's failure (error, timeout, bad return, no free VM) means.
type FailMode uint8

const (
	// FailOpen, the default, ignores the failure: on_request allows the request, pick
	// falls back to the pool's own algorithm, on_tick yields no actions and tells the
	// loop it was skipped ([autoscale.ErrPolicySkipped]: recorded, the targets hold).
	FailOpen FailMode = iota
	// FailClosed turns the failure into a refusal: on_request rejects the request with
	// 503, pick asks the caller to reject it, on_tick returns the error to the loop.
	// on_response has nothing to refuse and ignores the mode.
	FailClosed
)

// String returns "open" or "closed".
func (m FailMode) String() string {
	if m == FailClosed {
		return "closed"
	}
	return "open"
}

// NoBudget, as a budget in [Limits], turns the time budget off.
const NoBudget time.Duration = -1

// Limits bound what a script may use. The zero value means the defaults. Only the
// budgets make a VM run with a context (gopher-lua's SetContext), which costs a check
// per Lua instruction; see the package documentation for the measured cost.
type Limits struct {
	// RequestBudget bounds one call of on_request, pick or on_response, in wall time.
	// Zero means 50 ms; [NoBudget] turns it off; otherwise at least 100 µs. The budget
	// is wall time, so a goroutine descheduled on a saturated machine spends it too:
	// it is a backstop against runaway scripts, not a latency target.
	RequestBudget time.Duration
	// TickBudget bounds one call of on_tick. Zero means 250 ms; [NoBudget] turns it
	// off; otherwise at least 100 µs.
	TickBudget time.Duration
	// LoadBudget bounds the main chunk and self_test(). Zero means 1 s; [NoBudget]
	// turns it off; otherwise at least 100 µs.
	LoadBudget time.Duration
	// CallStackSize is the deepest Lua call stack, in frames. Zero means 200; range
	// 16..10,000.
	CallStackSize int
	// RegistrySize is the initial size of a VM's value stack, in slots. Zero means
	// 1024; range 256..RegistryMaxSize.
	RegistrySize int
	// RegistryMaxSize is the most the value stack may grow to, in slots (16 bytes
	// each). Zero means 65,536 (1 MiB); range RegistrySize..1<<22.
	RegistryMaxSize int
	// MaxStringLen is the longest string string.rep, string.format, string.gsub and
	// table.concat may build, in bytes. Zero means 1 MiB; range 1 KiB..256 MiB.
	MaxStringLen int
	// PoolSize is the most VMs the per-request hooks may use at once; a call that
	// finds them all busy waits for one (see PoolWait). Zero means 2 × GOMAXPROCS;
	// range 1..4096. The tick hook has one VM of its own.
	PoolSize int
	// PoolWait bounds how long a per-request hook call waits for a free VM when all
	// are busy; the call then fails with [ErrBusy] (counted as reason "busy") and the
	// request proceeds as the hook's fail mode says. The wait never exceeds the
	// hook's budget, nor the caller's context. Zero means 5 ms; [NoBudget] waits for
	// as long as the budget and the context allow; otherwise at least 1 µs.
	PoolWait time.Duration
	// MaxActions is the most actions one on_tick may return; a longer list fails the
	// tick (reason "limit", no actions applied). Zero means 1,000; range 1..1,000,000.
	MaxActions int
	// MaxStateBytes bounds on_tick's state table, which outlives the VMs that fill
	// it: measured (an estimate of the bytes reachable from it: tables, entries,
	// strings, closures and their upvalues, userdata) at the end of every tick,
	// failed ones included. Past it the state is reset to an empty table (counted in
	// Stats.StateResets) and the tick fails with reason "limit". Zero means 4 MiB;
	// range 1 KiB..1 GiB.
	MaxStateBytes int
	// MaxScriptScopes is the most scopes the script's observe may create in the
	// registry (observe("lat:"..req.path, ...) would otherwise make one per path);
	// scopes the registry holds already and those declared with [WithScopes] do not
	// count. Past it, observe of a new scope raises (reason "limit"). The registry
	// bounds all its scopes too (metrics.WithMaxScopes). Zero means 16; range
	// 1..1,024.
	MaxScriptScopes int
	// MaxCallBytes bounds the total bytes of the strings the library functions
	// (string.rep, format, gsub, char, table.concat) build in one call, so that a
	// loop of them (t[i] = string.rep("x", 1 MiB)) cannot fill the heap at memory
	// speed until the budget ends; past it the call raises (reason "limit"). Strings
	// built with .. and tables are bounded by the budget alone (see REFERENCE.md).
	// Zero means 32 × MaxStringLen (32 MiB); range MaxStringLen..1<<34.
	MaxCallBytes int
}

func (l Limits) withDefaults() Limits {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	def(&l.RequestBudget, 50*time.Millisecond)
	def(&l.TickBudget, 250*time.Millisecond)
	def(&l.LoadBudget, time.Second)
	if l.CallStackSize == 0 {
		l.CallStackSize = 200
	}
	if l.RegistrySize == 0 {
		l.RegistrySize = 1024
	}
	if l.RegistryMaxSize == 0 {
		l.RegistryMaxSize = 1 << 16
	}
	if l.MaxStringLen == 0 {
		l.MaxStringLen = 1 << 20
	}
	if l.PoolSize == 0 {
		l.PoolSize = 2 * runtime.GOMAXPROCS(0)
	}
	def(&l.PoolWait, 5*time.Millisecond)
	if l.MaxActions == 0 {
		l.MaxActions = 1000
	}
	if l.MaxStateBytes == 0 {
		l.MaxStateBytes = 4 << 20
	}
	if l.MaxScriptScopes == 0 {
		l.MaxScriptScopes = 16
	}
	if l.MaxCallBytes == 0 {
		l.MaxCallBytes = 32 * l.MaxStringLen
	}
	return l
}

// Validate reports every limit out of range.
func (l Limits) Validate() error {
	l = l.withDefaults()
	var errs []error
	for _, b := range []struct {
		name string
		d    time.Duration
	}{{"request budget", l.RequestBudget}, {"tick budget", l.TickBudget}, {"load budget", l.LoadBudget}} {
		if b.d != NoBudget && b.d < 100*time.Microsecond {
			errs = append(errs, configError("%s %v is below 100µs (use NoBudget to turn it off)", b.name, b.d))
		}
	}
	if l.CallStackSize < 16 || l.CallStackSize > 10_000 {
		errs = append(errs, configError("call stack size %d out of [16, 10000]", l.CallStackSize))
	}
	if l.RegistrySize < 256 || l.RegistrySize > l.RegistryMaxSize {
		errs = append(errs, configError("registry size %d out of [256, %d]", l.RegistrySize, l.RegistryMaxSize))
	}
	if l.RegistryMaxSize > 1<<22 {
		errs = append(errs, configError("registry max size %d above %d", l.RegistryMaxSize, 1<<22))
	}
	if l.MaxStringLen < 1<<10 || l.MaxStringLen > 1<<28 {
		errs = append(errs, configError("max string length %d out of [1KiB, 256MiB]", l.MaxStringLen))
	}
	if l.PoolWait != NoBudget && l.PoolWait < time.Microsecond {
		errs = append(errs, configError("pool wait %v is below 1µs (use NoBudget to wait as long as the budget allows)", l.PoolWait))
	}
	if l.MaxActions < 1 || l.MaxActions > 1_000_000 {
		errs = append(errs, configError("max actions %d out of [1, 1000000]", l.MaxActions))
	}
	if l.MaxStateBytes < 1<<10 || l.MaxStateBytes > 1<<30 {
		errs = append(errs, configError("max state bytes %d out of [1KiB, 1GiB]", l.MaxStateBytes))
	}
	if l.MaxCallBytes < l.MaxStringLen || l.MaxCallBytes > 1<<34 {
		errs = append(errs, configError("max call bytes %d out of [MaxStringLen %d, 1<<34]", l.MaxCallBytes, l.MaxStringLen))
	}
	if l.MaxScriptScopes < 1 || l.MaxScriptScopes > 1024 {
		errs = append(errs, configError("max script scopes %d out of [1, 1024]", l.MaxScriptScopes))
	}
	if l.PoolSize < 1 || l.PoolSize > 4096 {
		errs = append(errs, configError("pool size %d out of [1, 4096]", l.PoolSize))
	}
	return errors.Join(errs...)
}

func (l Limits) budget(h int) time.Duration {
	var d time.Duration
	switch h {
	case hTick:
		d = l.TickBudget
	case hLoad, hSelfTest:
		d = l.LoadBudget
	default:
		d = l.RequestBudget
	}
	if d == NoBudget {
		return 0
	}
	return d
}

// poolWait is how long a call of hook h waits for a free VM; 0 means no bound but
// the caller's context.
func (l Limits) poolWait(h int) time.Duration {
	w, b := l.PoolWait, l.budget(h)
	switch {
	case w == NoBudget:
		return b
	case b > 0:
		return min(w, b)
	}
	return w
}

type config struct {
	limits   Limits
	clock    metrics.Clock
	logger   *slog.Logger
	meter    metric.MeterProvider
	registry *metrics.Registry
	fail     [numHooks]FailMode
	values   map[string]any
	logEvery time.Duration
	scopes   []metrics.Scope
	// loadMaxAge hides older load reports from pick; 0 for no limit.
	loadMaxAge time.Duration
}

// Option configures a [Runtime].
type Option func(*config) error

// WithLimits sets the limits; see [Limits] for the defaults.
func WithLimits(l Limits) Option {
	return func(c *config) error {
		if err := l.Validate(); err != nil {
			return err
		}
		c.limits = l.withDefaults()
		return nil
	}
}

// WithClock sets the clock scripts read (m.now, now()) and failure logs are paced by.
// The default is [metrics.NewSystemClock].
func WithClock(clk metrics.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return configError("nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithLogger sets the logger for print() and for failures. The default is
// [slog.Default] at the time [New] runs.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return configError("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMeterProvider sets where the failure counter (luabind.hook.failures, attributes
// hook and reason) is exported. The default exports nothing.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return configError("nil meter provider")
		}
		c.meter = mp
		return nil
	}
}

// WithRegistry sets the registry observe(scope, key, value) records into. Without
// one, observe raises an error.
func WithRegistry(r *metrics.Registry) Option {
	return func(c *config) error {
		if r == nil {
			return configError("nil registry")
		}
		c.registry = r
		return nil
	}
}

// WithFailMode sets a hook's failure mode; the default is [FailOpen] for every hook.
func WithFailMode(h Hook, m FailMode) Option {
	return func(c *config) error {
		i := hookOf(h)
		if i < 0 || i >= hLoad {
			return configError("fail mode for unknown hook %q", h)
		}
		if m > FailClosed {
			return configError("fail mode %d", m)
		}
		c.fail[i] = m
		return nil
	}
}

// WithConfig sets the script's global config table: policy parameters. Values may be
// nil, bool, string, any integer or float type, time.Duration (seen in Lua as
// seconds), []any, []string, []float64, map[string]any and map[string]string, nested;
// the map is copied into each VM, so Lua cannot change the caller's map.
func WithConfig(m map[string]any) Option {
	return func(c *config) error {
		if err := checkConfigValue(m, 0); err != nil {
			return configError("config: %v", err)
		}
		c.values = maps.Clone(m)
		return nil
	}
}

// WithLogEvery sets how often the same (hook, reason) failure is logged; the others
// are counted and reported with the next log line. The default is 10 s; it must be
// positive.
func WithLogEvery(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return configError("log interval %v is not positive", d)
		}
		c.logEvery = d
		return nil
	}
}

// WithLoadMaxAge sets the age past which [Runtime.BalancerPick] ignores a backend's
// load report: pick then reads its queue, kv_cache and load_age as nil, as for a
// backend without one. A report ages from when it was read (its At); a scraper that
// can no longer read a backend leaves its last report, which grows stale. Zero, the
// default, shows every report with its age and lets the script judge; a scraper's
// own limit (three intervals in package balancer/loadreport) is a good value. It
// must not be negative.
func WithLoadMaxAge(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return configError("negative load max age")
		}
		c.loadMaxAge = d
		return nil
	}
}

// WithScopes declares scopes of the host's own (what its observe calls or a custom
// recorder fill), so that m.scope, m.keys and the aggregates accept them before their
// first window exists. The library's scopes, and any scope that has windows, need no
// declaration; an undeclared scope without windows raises (a misspelt scope would
// otherwise read as an empty one). Names are 1..64 bytes.
func WithScopes(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if n == "" || len(n) > 64 {
				return configError("scope %q is not 1..64 bytes", n)
			}
			c.scopes = append(c.scopes, metrics.Scope(n))
		}
		return nil
	}
}
