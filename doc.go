// Package autoscalelua is an embeddable library for programmable, request-level
// autoscaling in Go gateways. This package holds only documentation; the library lives
// in its sub-packages.
//
// # Two loops
//
// The data plane runs per request and must stay cheap: the [middleware] classifies a
// request (route, tenant, model, priority), records it into the [metrics] windows with
// lock-free atomics and no allocation, and, in a gateway, the [balancer] picks a backend
// whose outcome feeds per-backend windows and moving averages. Lua runs on this path only
// when the user installs a per-request hook ([luabind]'s on_request, pick, on_response).
//
// The control plane runs per tick (one second by default): the [autoscale] loop
// snapshots the windows, asks a policy — a Lua script's on_tick, or Go — what to do,
// passes each action through a safety layer (bounds, stabilisation, step limits,
// cooldowns, panic mode, a leader gate, dry-run), and applies it: Scale through an
// [actuator] (Kubernetes, a webhook, a queue, or your own), SetWeight and Eject on a
// balancer pool, Shed, Throttle and Route in the middleware's admission. An actuator call
// never blocks a request.
//
//	request ─► middleware ─► admission ─► on_request ─► balancer.Pick ─► backend
//	              │ records                                              │
//	              ▼                                                      │
//	        metrics windows ◄──────────── outcome (latency, status) ◄────┘
//	              │ every tick
//	              ▼
//	       autoscale.Loop ─► policy ─► safety layer ─► actuator / pool / admission
//
// # Packages
//
//   - [metrics]: windows, histograms, EWMAs, the keyed registry, clocks; imports nothing
//     of the module. metrics/otelmetrics exports windows to OpenTelemetry.
//   - [middleware]: func(http.Handler) http.Handler that records every request, runs a
//     hook (the access phase) and admission control (shedding, tenant throttling, a
//     concurrency limit, a priority queue).
//   - [balancer]: pools, algorithms, passive and active health, the reverse proxy.
//   - [actuator]: the Actuator interface and generic helpers; actuator/kubernetes
//     scales any /scale subresource and elects a leader with a Lease; actuator/webhook
//     and actuator/queue (NATS, Kafka) hand decisions to other systems.
//   - [autoscale]: the loop, actions, safety layer, decisions and shipped Lua policies;
//     autoscale/dashboard is the live page, autoscale/simulate the simulator.
//   - [luabind]: the sandboxed, pooled Lua runtime and its hooks; luabind/luatest runs
//     Lua tests of scripts, luabind/luahttp plugs on_request into the middleware.
//
// Lower packages never import higher ones: metrics imports nothing of the module and
// actuator only metrics (for its clock); balancer imports metrics; autoscale imports
// metrics and actuator; luabind imports metrics, autoscale and balancer; middleware
// imports metrics and balancer.
// Where a higher package acts on a lower one's object, it declares a small interface
// that the other satisfies.
//
// # One shape for every constructor
//
// A constructor that can fail returns its value and an error that reports every bad
// setting at once, wrapping the package's ErrInvalidConfig; a nil option or a nil
// argument to an option is one of them, never a panic. Collaborators are options of
// one shape everywhere: WithClock takes a [metrics.Clock] (whose timers a
// [metrics.ManualClock] fires on Advance, so tests never sleep), WithRand a
// math/rand/v2 Source, WithLogger a *slog.Logger. Leaving out WithLogger means
// [slog.Default], in every package, so that a failure is never silent for want of a
// logger; pass slog.New(slog.DiscardHandler) to silence one part.
//
// [middleware]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/middleware
// [metrics]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/metrics
// [balancer]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/balancer
// [luabind]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/luabind
// [autoscale]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/autoscale
// [actuator]: https://pkg.go.dev/github.com/autoscalelua/autoscalelua/actuator
package autoscalelua
