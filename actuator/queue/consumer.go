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
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Consumer defaults.
const (
	DefaultSeenDecisions = 10000
	DefaultMaxTargets    = 10000
	DefaultMaxAttempts   = 5
	DefaultMaxClockSkew  = 2 * time.Second
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
	// Future counts events dated more than the maximum clock skew after the
	// consumer's clock: they are handled with their time taken as the
	// consumer's clock plus the skew. A producer's clock is off.
	Future uint64
	// Refused counts events skipped because they are for a new target while
	// the maximum number of targets is remembered.
	Refused uint64
}

// Consumer applies decoded scale events to an [actuator.Actuator]: it is the
// broker-independent core of a dedicated scaling controller, and the
// [Handler] that the broker adapters call for each message.
//
// # At most once, never backwards
//
// It makes at-least-once, out-of-order delivery safe. For each target it
// remembers the decision last applied, and applies an event only when it is
// newer than that one; an older one is skipped as stale, the same one as a
// duplicate. Newer means, in this order:
//
//   - a higher leader's fencing token ([actuator.Sequence] Term), when both
//     carry one and they differ: after a change of leader the new leader's
//     decisions win, whatever the clocks say;
//   - else a higher decision number, when both come from the same stream
//     (one loop): exact, whatever the clocks or the delivery order;
//   - else a later time (decisions of producers that do not number them, or
//     of two loops without fencing tokens). Two decisions with the same time
//     cannot be ordered: the one applied first stands.
//
// Event times are bounded by the consumer's clock: an event dated more than
// the maximum clock skew (default 2 s) after it counts as Future and is
// handled as if dated at the consumer's clock plus the skew, so a producer
// whose clock runs fast can hold back other producers' decisions by time for
// at most the skew, not for as long as its clock is ahead.
//
// The per-target record is what keeps a decision from being applied twice,
// so it is never forgotten: when the maximum number of targets (default
// 10000) is remembered, an event for another target is refused (counted in
// Refused, logged at Error level) and never applied; raise the limit above
// the number of targets the producers scale. Decision IDs are remembered in
// a bounded LRU (default 10000) only to tell duplicates and given-up
// decisions apart; forgetting one cannot apply a decision twice, since it is
// not newer than the record of its target.
//
// Events for one target are applied one at a time. Poison messages are
// logged, counted and skipped, never retried.
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
	maxTargets  int
	maxSkew     time.Duration
	now         func() time.Time
	seed        maphash.Seed
	locks       [stripes]sync.Mutex

	mu       sync.Mutex                       // guards the maps and LRUs below
	seen     *simplelru.LRU[string, struct{}] // decision IDs done
	newest   map[string]applied               // target → the decision last applied
	attempts *simplelru.LRU[string, int]      // decision ID → failed attempts

	applied, duplicates, stale, poison, failed, gaveUp, future, refused atomic.Uint64
}

// applied is the decision last applied to a target.
type applied struct {
	id   string
	seq  actuator.Sequence
	time time.Time // bounded by the consumer's clock
}

// newer reports whether the decision (seq, t) is newer than a; see
// [Consumer].
func (a applied) newer(seq actuator.Sequence, t time.Time) bool {
	switch {
	case seq.Term != 0 && a.seq.Term != 0 && seq.Term != a.seq.Term:
		return seq.Term > a.seq.Term
	case seq.Stream != "" && seq.Stream == a.seq.Stream && seq.N != 0 && a.seq.N != 0:
		return seq.N > a.seq.N
	}
	return t.After(a.time)
}

var _ Handler = (*Consumer)(nil)

type consumerConfig struct {
	logger      *slog.Logger
	seen        int
	targets     int
	maxAttempts int
	maxSkew     time.Duration
	now         func() time.Time
	errs        []error
}

// ConsumerOption configures a [Consumer].
type ConsumerOption func(*consumerConfig)

// WithLogger sets the logger. Default [slog.Default], the default logger everywhere in
// this module. A nil logger is an error of [NewConsumer].
func WithLogger(l *slog.Logger) ConsumerOption {
	return func(c *consumerConfig) {
		if l == nil {
			c.errs = append(c.errs, errors.New("nil logger"))
			return
		}
		c.logger = l
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

// WithMaxTargets sets for how many targets the decision last applied is
// remembered. Records are never forgotten: with n targets remembered, events
// for another target are refused (see [Consumer]). Default
// [DefaultMaxTargets]; it must be positive.
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

// WithMaxClockSkew sets how far after the consumer's clock an event may be
// dated before its time is taken as the clock plus d (see [Consumer]).
// Default [DefaultMaxClockSkew]; it must not be negative.
func WithMaxClockSkew(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("max clock skew %s is negative", d))
		}
		c.maxSkew = d
	}
}

// WithClock sets the clock event times are bounded by. Default the wall clock. A nil clock is an error of [NewConsumer].
func WithClock(clk metrics.Clock) ConsumerOption {
	return func(c *consumerConfig) {
		if clk == nil {
			c.errs = append(c.errs, errors.New("nil clock"))
			return
		}
		c.now = clk.Now
	}
}

// ErrInvalidConfig reports a bad argument or option.
var ErrInvalidConfig = errors.New("queue: invalid configuration")

// NewConsumer returns a [Consumer] that applies events with a.
func NewConsumer(a actuator.Actuator, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{
		logger:      slog.Default(),
		seen:        DefaultSeenDecisions,
		targets:     DefaultMaxTargets,
		maxAttempts: DefaultMaxAttempts,
		maxSkew:     DefaultMaxClockSkew,
		now:         time.Now,
	}
	for _, o := range opts {
		if o == nil {
			cfg.errs = append(cfg.errs, errors.New("nil option"))
			continue
		}
		o(&cfg)
	}
	errs := cfg.errs
	if a == nil {
		errs = append(errs, errors.New("nil actuator"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	c := &Consumer{
		act: a, logger: cfg.logger, maxAttempts: cfg.maxAttempts,
		maxTargets: cfg.targets, maxSkew: cfg.maxSkew, now: cfg.now,
		seed: maphash.MakeSeed(), newest: make(map[string]applied),
	}
	var err error
	if c.seen, err = simplelru.NewLRU[string, struct{}](cfg.seen, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.attempts, err = simplelru.NewLRU[string, int](cfg.seen, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// Handle decodes one message and applies it; see [Consumer]. It returns nil
// when the message is done (applied, duplicate, stale, poison, refused or
// given up)
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

	at := req.Time
	if bound := c.now().Add(c.maxSkew); at.After(bound) {
		c.future.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelWarn, "queue: decision dated after the consumer's clock; its producer's clock is off",
			slog.String("target", key), slog.String("decision_id", req.DecisionID),
			slog.Time("decision_time", req.Time), slog.Time("taken_as", bound))
		at = bound
	}

	c.mu.Lock()
	_, dup := c.seen.Get(req.DecisionID)
	last, known := c.newest[key]
	full := !known && len(c.newest) >= c.maxTargets
	c.mu.Unlock()
	switch {
	case dup || (known && last.id == req.DecisionID):
		c.duplicates.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelDebug, "queue: skipping duplicate decision",
			slog.String("target", key), slog.String("decision_id", req.DecisionID))
		return nil
	case known && !last.newer(req.Seq, at):
		c.stale.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelInfo, "queue: skipping decision not newer than the applied one",
			slog.String("target", key), slog.String("decision_id", req.DecisionID),
			slog.Time("decision_time", req.Time), slog.Time("applied_time", last.time),
			slog.String("applied_id", last.id))
		return nil
	case full:
		c.refused.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelError, "queue: refusing a decision for a new target: the maximum number of targets is remembered",
			slog.String("target", key), slog.String("decision_id", req.DecisionID), slog.Int("max_targets", c.maxTargets))
		return nil
	}

	err = c.act.Scale(ctx, req)
	if err == nil {
		c.mu.Lock()
		c.seen.Add(req.DecisionID, struct{}{})
		c.attempts.Remove(req.DecisionID)
		c.newest[key] = applied{id: req.DecisionID, seq: req.Seq, time: at}
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
		Future:     c.future.Load(),
		Refused:    c.refused.Load(),
	}
}
