package balancer

import (
	"context"
	"fmt"
	"slices"
)

// Discovery is a source of a pool's membership: a static list, Kubernetes
// EndpointSlices (the actuator/kubernetes package), DNS, a registry. Watch calls update
// with the full list of endpoints at the start and after every change, until ctx is
// done or it fails; it returns ctx's error or its own. An error from update (an invalid
// list) is the source's to handle: log it and keep watching, or return it.
type Discovery interface {
	Watch(ctx context.Context, update func([]Endpoint) error) error
}

// Static is a fixed list of endpoints: a [Discovery] that reports it once. It is safe
// for concurrent use as long as nobody modifies the slice.
type Static []Endpoint

var _ Discovery = Static(nil)

// Watch calls update with the list once, then waits for ctx. It returns update's
// error, or ctx's.
func (s Static) Watch(ctx context.Context, update func([]Endpoint) error) error {
	if err := update(slices.Clone(s)); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// Sync keeps the pool's membership in step with d until ctx is done: it runs d.Watch
// with [Pool.Update] and returns its error. An invalid list leaves the pool as it was
// and ends Sync with the error, wrapped.
func (p *Pool) Sync(ctx context.Context, d Discovery) error {
	if d == nil {
		return fmt.Errorf("%w: nil discovery", ErrInvalidConfig)
	}
	return d.Watch(ctx, p.Update)
}
