package actuator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Log is a dry-run [Actuator]: it logs each request and remembers the last
// replica count per target, so it is also a [ReplicaReader]. It never fails
// except on an invalid request.
//
// Log is safe for concurrent use. Its memory grows with the number of distinct
// targets it is asked to scale, which the policy bounds.
type Log struct {
	logger  *slog.Logger
	initial int
	hasInit bool

	mu   sync.Mutex
	last map[Target]int
}

var (
	_ Actuator      = (*Log)(nil)
	_ ReplicaReader = (*Log)(nil)
)

// LogOption configures a [Log].
type LogOption func(*Log)

// WithInitialReplicas makes [Log.Replicas] report n for a target that was
// never scaled, instead of returning [ErrUnknownTarget]. A negative n is
// ignored.
func WithInitialReplicas(n int) LogOption {
	return func(l *Log) {
		if n >= 0 {
			l.initial, l.hasInit = n, true
		}
	}
}

// NewLog returns a dry-run actuator that logs to logger at Info level. A nil
// logger means [slog.Default], the default logger everywhere in this module;
// pass slog.New(slog.DiscardHandler) to keep only the remembered counts.
func NewLog(logger *slog.Logger, opts ...LogOption) *Log {
	if logger == nil {
		logger = slog.Default()
	}
	l := &Log{logger: logger, last: make(map[Target]int)}
	for _, o := range opts {
		if o != nil {
			o(l)
		}
	}
	return l
}

// Scale validates req, logs it and remembers req.Replicas for req.Target. An
// invalid request returns an error wrapping [ErrInvalidRequest], marked
// [Permanent], and is neither logged as applied nor remembered.
func (l *Log) Scale(ctx context.Context, req Request) error {
	if err := req.Validate(); err != nil {
		return Permanent(err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("actuator: log: %w", err)
	}
	l.mu.Lock()
	l.last[req.Target] = req.Replicas
	l.mu.Unlock()
	l.logger.LogAttrs(ctx, slog.LevelInfo, "actuator: scale (dry run)",
		slog.String("target", req.Target.String()),
		slog.Int("replicas", req.Replicas),
		slog.Int("previous", req.Previous),
		slog.String("reason", req.Reason),
		slog.String("decision_id", req.DecisionID),
		slog.Time("decision_time", req.Time),
	)
	return nil
}

// Replicas returns the replica count of the last successful [Log.Scale] for
// t. For a target never scaled it returns the value set with
// [WithInitialReplicas], or an error wrapping [ErrUnknownTarget].
func (l *Log) Replicas(ctx context.Context, t Target) (int, error) {
	l.mu.Lock()
	n, ok := l.last[t]
	l.mu.Unlock()
	switch {
	case ok:
		return n, nil
	case l.hasInit:
		return l.initial, nil
	default:
		return 0, fmt.Errorf("%w: %s", ErrUnknownTarget, t)
	}
}
