package actuatortest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// Recorder is an [actuator.Actuator] and [actuator.ReplicaReader] that
// records every request it is given. Its zero value is ready to use and
// records successfully. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	requests []actuator.Request
	replicas map[actuator.Target]int
	err      error
}

var (
	_ actuator.Actuator      = (*Recorder)(nil)
	_ actuator.ReplicaReader = (*Recorder)(nil)
)

// Scale records req. If an error was set with [Recorder.SetErr], the request
// is still recorded (as an attempt) but the replica count is not updated and
// that error is returned. Scale does not validate req, so tests can see
// exactly what the code under test sent; it returns ctx.Err() if ctx is done.
func (r *Recorder) Scale(ctx context.Context, req actuator.Request) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("actuatortest: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	if r.err != nil {
		return r.err
	}
	if r.replicas == nil {
		r.replicas = make(map[actuator.Target]int)
	}
	r.replicas[req.Target] = req.Replicas
	return nil
}

// Replicas returns the replica count of the last successful Scale for t, or
// the value set with [Recorder.SetReplicas]; otherwise an error wrapping
// [actuator.ErrUnknownTarget].
func (r *Recorder) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.replicas[t]
	if !ok {
		return 0, fmt.Errorf("actuatortest: %w: %s", actuator.ErrUnknownTarget, t)
	}
	return n, nil
}

// SetReplicas sets the replica count [Recorder.Replicas] reports for t, as
// if the target already existed at that size.
func (r *Recorder) SetReplicas(t actuator.Target, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.replicas == nil {
		r.replicas = make(map[actuator.Target]int)
	}
	r.replicas[t] = n
}

// SetErr makes every later Scale return err; nil restores success. Wrap err
// with [actuator.Permanent] to simulate a failure that must not be retried.
func (r *Recorder) SetErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// Requests returns a copy of every request given to Scale, failed ones
// included, in call order.
func (r *Recorder) Requests() []actuator.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// Last returns the most recent request for t, failed or not, and whether
// there was one.
func (r *Recorder) Last(t actuator.Target) (actuator.Request, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.requests) - 1; i >= 0; i-- {
		if r.requests[i].Target == t {
			return r.requests[i], true
		}
	}
	return actuator.Request{}, false
}

// Reset forgets all requests, replica counts and the configured error.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests, r.replicas, r.err = nil, nil, nil
}
