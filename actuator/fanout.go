package actuator

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// FanOut returns an [Actuator] that sends each request to every one of
// actuators concurrently and waits for all of them before returning. Nil
// entries are ignored; with none left, Scale does nothing and returns nil.
//
// The error is the [errors.Join] of the failures, each prefixed with the
// actuator's position, or nil when all succeeded. Because [IsPermanent] sees
// through the join, the result is permanent as soon as one failure is. When
// the loop retries a failed fan-out, every branch is called again: Scale sets
// a count, so a branch that had succeeded is asked for the same count again.
//
// The result implements [ReplicaReader] when the first non-nil actuator does,
// and delegates to it. It is safe for concurrent use if every actuator is.
func FanOut(actuators ...Actuator) Actuator {
	list := make([]Actuator, 0, len(actuators))
	for _, a := range actuators {
		if a != nil {
			list = append(list, a)
		}
	}
	f := &fanOut{list: list}
	if len(list) > 0 {
		if rr, ok := list[0].(ReplicaReader); ok {
			return &fanOutReader{fanOut: f, rr: rr}
		}
	}
	return f
}

type fanOut struct{ list []Actuator }

func (f *fanOut) Scale(ctx context.Context, req Request) error {
	switch len(f.list) {
	case 0:
		return nil
	case 1:
		if err := f.list[0].Scale(ctx, req); err != nil {
			return fmt.Errorf("actuator: fan-out 0: %w", err)
		}
		return nil
	}
	errs := make([]error, len(f.list))
	var wg sync.WaitGroup
	for i, a := range f.list {
		wg.Go(func() {
			if err := a.Scale(ctx, req); err != nil {
				errs[i] = fmt.Errorf("actuator: fan-out %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

type fanOutReader struct {
	*fanOut
	rr ReplicaReader
}

func (f *fanOutReader) Replicas(ctx context.Context, t Target) (int, error) {
	return f.rr.Replicas(ctx, t)
}
