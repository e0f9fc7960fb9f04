package balancer

import (
	"context"
	"slices"
	"strings"
)

// LabelModel is the [Endpoint] label that names the models a backend serves: one
// model, or several separated by commas ("llama-70b,llama-70b-instruct"). A request
// whose [Request.Model] is set goes only to a ready backend that serves its model.
const LabelModel = "model"

// group is the ready backends that serve one model, with the picker built for them.
// members counts every backend of the pool that serves it, ready or not.
type group struct {
	set     *Set
	picker  Picker
	members int
}

// modelsOf returns the models a backend's labels name, in the order given.
func modelsOf(labels map[string]string) []string {
	v := labels[LabelModel]
	if v == "" {
		return nil
	}
	var out []string
	for m := range strings.SplitSeq(v, ",") {
		if m = strings.TrimSpace(m); m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// Destination is where a request should go, as the layer in front of a [Proxy] decided:
// the middleware, after its hook (a Lua on_request) and its admission (a route action)
// had their say. The proxy sends a request whose Destination names a model to that
// model's backends, and one whose Destination names a route given to [WithRoute] to
// that route's pool.
type Destination struct {
	// Route is the request's route after re-routing; "" for none.
	Route string
	// Model is the model the request goes to after re-routing; "" for none.
	Model string
}

type destinationKey struct{}

// WithDestination returns a copy of ctx that carries d, for [DestinationFrom]. The
// copy is also the state a [Proxy] serving the request keeps, so that a request given
// a destination costs the proxy no further copy.
func WithDestination(ctx context.Context, d Destination) context.Context {
	return &proxyState{parent: ctx, dest: d, hasDest: true}
}

// DestinationFrom returns the destination ctx carries, if any.
func DestinationFrom(ctx context.Context) (Destination, bool) {
	if d, ok := ctx.Value(destinationKey{}).(*Destination); ok {
		return *d, true
	}
	return Destination{}, false
}
