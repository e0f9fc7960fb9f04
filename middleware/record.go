package middleware

import (
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Windows are the windows one request is recorded in: its route's, its tenant's and
// its model's; nil for a key the request does not have. The middleware records every
// request through them. A program that serves requests without an http.Handler
// records through them too — the simulator (autoscale/simulate) does — so that its
// windows read as the middleware's would.
//
// A Windows value is safe for concurrent use (the windows are), and its methods
// allocate nothing.
type Windows struct {
	Route, Tenant, Model *metrics.Window
}

// WindowsOf returns the windows of keys in reg: the route's in [metrics.ScopeRoute],
// the tenant's in [metrics.ScopeTenant], the model's in [metrics.ScopeModel]. An empty
// key has no window.
func WindowsOf(reg *metrics.Registry, keys Keys) Windows {
	var w Windows
	if keys.Route != "" {
		w.Route = reg.Window(metrics.ScopeRoute, keys.Route)
	}
	if keys.Tenant != "" {
		w.Tenant = reg.Window(metrics.ScopeTenant, keys.Tenant)
	}
	if keys.Model != "" {
		w.Model = reg.Window(metrics.ScopeModel, keys.Model)
	}
	return w
}

// Start records that the request started at now: it is in flight in each window until
// [Windows.Done].
func (w Windows) Start(now time.Time) {
	if w.Route != nil {
		w.Route.StartAt(now)
	}
	if w.Tenant != nil {
		w.Tenant.StartAt(now)
	}
	if w.Model != nil {
		w.Model.StartAt(now)
	}
}

// Done records the end, at end, of a request that [Windows.Start] began, with its
// observation (latency, outcome, bytes, value).
func (w Windows) Done(end time.Time, o metrics.Observation) {
	if w.Route != nil {
		w.Route.DoneAt(end, o)
	}
	if w.Tenant != nil {
		w.Tenant.DoneAt(end, o)
	}
	if w.Model != nil {
		w.Model.DoneAt(end, o)
	}
}

// Reject records a request turned away at now before it started (shed, throttled, or
// refused by a hook): an observation of outcome [metrics.OutcomeRejected], never in
// flight.
func (w Windows) Reject(now time.Time) {
	o := metrics.Observation{Outcome: metrics.OutcomeRejected}
	if w.Route != nil {
		w.Route.RecordAt(now, o)
	}
	if w.Tenant != nil {
		w.Tenant.RecordAt(now, o)
	}
	if w.Model != nil {
		w.Model.RecordAt(now, o)
	}
}
