package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Consumer defaults.
const (
	DefaultSeenDecisions = 10000
	DefaultMaxTargets    = 10000
	DefaultMaxAttempts   = 5
)

// stripes is the number of per-target locks.
const stripes = 64

// Stats counts what a [Consumer] did with the messages it handled.
type Stats struct {
	// Applied counts events the actuator applied.
	Applied uint64
	// Duplicates counts events skipped because their decision ID was already
	// applied or given up (at-least-once redelivery).
	Duplicates uint64
	// Stale counts events skipped because a newer decision for the same
	// target was already applied (out-of-order delivery).
	Stale uint64
	// Poison counts messages skipped because they do not decode.
	Poison uint64
	// Failed counts actuator calls that failed; each one either asked for
	// redelivery or led to giving up.
	Failed uint64
	// GaveUp counts events dropped after failing the maximum number of
	// attempts, or failing permanently.
	GaveUp uint64
}

// Consumer applies decoded scale events to an [actuator.Actuator]: it is the
// broker-independent core of a dedicated scaling controller, and the
// [Handler] that the broker adapters call for each message.
//
// It makes at-least-once delivery safe: an event whose decision ID was
// already applied is skipped (IDs are remembered in a bounded LRU, by
// default 10000), and an event older than the newest decision applied for its
// target is skipped too, so out-of-order delivery never moves a target back
// to an older decision. Events for one target are applied one at a time.
// Poison messages are logged, counted and skipped, never retried.
//
// When the actuator fails, Handle returns an error so the adapter asks the
// broker to deliver the event again later (a NATS nak, a Kafka re-poll);
// after the maximum number of failed attempts (default 5), or at once on a
// [actuator.Permanent] error, the event is logged at Error level, counted in
// GaveUp and skipped. A later decision for the same target, which the loop
// makes every tick, supersedes it. A failure caused by ctx ending (shutdown)
// does not count as an attempt.
//
// A Consumer is safe for concurrent use.
type Consumer struct {
	act         actuator.Actuator
	logger      *slog.Logger
	maxAttempts int
	seed        maphash.Seed
	locks       [stripes]sync.Mutex

	mu       sync.Mutex                        // guards the three LRUs
	seen     *simplelru.LRU[string, struct{}]  // decision IDs done
	newest   *simplelru.LRU[string, time.Time] // target → newest applied decision time
	attempts *simplelru.LRU[string, int]       // decision ID → failed attempts

	applied, duplicates, stale, poison, failed, gaveUp atomic.Uint64
}

var _ Handler = (*Consumer)(nil)

type consumerConfig struct {
	logger      *slog.Logger
	seen        int
	targets     int
	maxAttempts int
	errs        []error
}

// ConsumerOption configures a [Consumer].
type ConsumerOption func(*consumerConfig)

// WithLogger sets the logger. Default: no logging.
func WithLogger(l *slog.Logger) ConsumerOption {
	return func(c *consumerConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithSeenDecisions sets how many decision IDs are remembered for
// deduplication. Default [DefaultSeenDecisions]; it must be positive.
func WithSeenDecisions(n int) ConsumerOption {
	return func(c *consumerConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("seen decisions %d is not positive", n))
		}
		c.seen = n
	}
}

// WithMaxTargets sets for how many targets the newest decision time is
// remembered; a target forgotten (least recently used first) accepts any
// decision next. Default [DefaultMaxTargets]; it must be positive.
func WithMaxTargets(n int) ConsumerOption {
	return func(c *consumerConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("max targets %d is not positive", n))
		}
		c.targets = n
	}
}

// WithMaxAttempts sets how many times an event may fail in the actuator
// before it is given up. Default [DefaultMaxAttempts]; it must be positive.
func WithMaxAttempts(n int) ConsumerOption {
	return func(c *consumerConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("max attempts %d is not positive", n))
		}
		c.maxAttempts = n
	}
}

// ErrInvalidConfig reports a bad argument or option.
var ErrInvalidConfig = errors.New("queue: invalid configuration")

// NewConsumer returns a [Consumer] that applies events with a.
func NewConsumer(a actuator.Actuator, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{
		logger:      slog.New(slog.DiscardHandler),
		seen:        DefaultSeenDecisions,
		targets:     DefaultMaxTargets,
		maxAttempts: DefaultMaxAttempts,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	errs := cfg.errs
	if a == nil {
		errs = append(errs, errors.New("nil actuator"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	c := &Consumer{act: a, logger: cfg.logger, maxAttempts: cfg.maxAttempts, seed: maphash.MakeSeed()}
	var err error
	if c.seen, err = simplelru.NewLRU[string, struct{}](cfg.seen, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.newest, err = simplelru.NewLRU[string, time.Time](cfg.targets, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.attempts, err = simplelru.NewLRU[string, int](cfg.seen, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// Handle decodes one message and applies it; see [Consumer]. It returns nil
// when the message is done (applied, duplicate, stale, poison or given up)
// and an error, wrapping the actuator's, when it should be delivered again.
func (c *Consumer) Handle(ctx context.Context, data []byte) error {
	req, err := Decode(data)
	if err != nil {
		c.poison.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelWarn, "queue: skipping poison message",
			slog.Int("bytes", len(data)), slog.String("error", err.Error()))
		return nil
	}
	key := req.Target.String()
	lock := &c.locks[maphash.String(c.seed, key)%stripes]
	lock.Lock()
	defer lock.Unlock()

	c.mu.Lock()
	_, dup := c.seen.Get(req.DecisionID)
	newest, known := c.newest.Get(key)
	c.mu.Unlock()
	switch {
	case dup:
		c.duplicates.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelDebug, "queue: skipping duplicate decision",
			slog.String("target", key), slog.String("decision_id", req.DecisionID))
		return nil
	case known && req.Time.Before(newest):
		c.stale.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelInfo, "queue: skipping decision older than the applied one",
			slog.String("target", key), slog.String("decision_id", req.DecisionID),
			slog.Time("decision_time", req.Time), slog.Time("applied_time", newest))
		return nil
	}

	err = c.act.Scale(ctx, req)
	if err == nil {
		c.mu.Lock()
		c.seen.Add(req.DecisionID, struct{}{})
		c.attempts.Remove(req.DecisionID)
		if !known || req.Time.After(newest) {
			c.newest.Add(key, req.Time)
		}
		c.mu.Unlock()
		c.applied.Add(1)
		return nil
	}

	c.failed.Add(1)
	if ctx.Err() != nil {
		return fmt.Errorf("queue: apply decision %s for %s: %w", req.DecisionID, key, err)
	}
	c.mu.Lock()
	n, _ := c.attempts.Get(req.DecisionID)
	n++
	giveUp := n >= c.maxAttempts || actuator.IsPermanent(err)
	if giveUp {
		c.attempts.Remove(req.DecisionID)
		c.seen.Add(req.DecisionID, struct{}{})
	} else {
		c.attempts.Add(req.DecisionID, n)
	}
	c.mu.Unlock()
	if giveUp {
		c.gaveUp.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelError, "queue: giving up on decision",
			slog.String("target", key), slog.String("decision_id", req.DecisionID),
			slog.Int("replicas", req.Replicas), slog.Int("attempts", n), slog.String("error", err.Error()))
		return nil
	}
	c.logger.LogAttrs(ctx, slog.LevelWarn, "queue: decision failed, asking for redelivery",
		slog.String("target", key), slog.String("decision_id", req.DecisionID),
		slog.Int("attempt", n), slog.Int("max_attempts", c.maxAttempts), slog.String("error", err.Error()))
	return fmt.Errorf("queue: apply decision %s for %s (attempt %d of %d): %w", req.DecisionID, key, n, c.maxAttempts, err)
}

// Stats returns the counters. They are read one by one, so under
// concurrent use they need not add up at a single instant.
func (c *Consumer) Stats() Stats {
	return Stats{
		Applied:    c.applied.Load(),
		Duplicates: c.duplicates.Load(),
		Stale:      c.stale.Load(),
		Poison:     c.poison.Load(),
		Failed:     c.failed.Load(),
		GaveUp:     c.gaveUp.Load(),
	}
}
