package redisstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
)

// ConsumerConfig configures a [Consumer]. The zero value of every field means its
// default.
type ConsumerConfig struct {
	// Prefix is the [Actuator]'s prefix. Default [DefaultPrefix].
	Prefix string
	// Block is how long one stream read waits for new entries; [Consumer.Run] returns
	// at most this long after its context ends. Default one second.
	Block time.Duration
	// Retry is the wait before a decision the actuator failed on is tried again.
	// Default one second.
	Retry time.Duration
}

// Consumer applies the decisions an [Actuator] writes to Redis with another actuator:
// the core of a scaling controller that reads its orders from Redis. It starts from
// the targets' stored state (the newest decision of each), then follows the stream.
// Decisions go through a queue.Consumer, so an applied decision ID is never applied
// again and a decision older than one applied for its target is skipped: restarts and
// replays never move a target backwards. A decision the actuator fails on is retried
// every Retry, until the queue consumer gives up on it (its max attempts). It is safe
// for concurrent use, though one Run at a time makes sense.
type Consumer struct {
	client redis.UniversalClient
	cfg    ConsumerConfig
	stream string
	qc     *queue.Consumer

	mu     sync.Mutex
	lastID string // the last stream entry handled; "" before the first sync
}

// NewConsumer returns a consumer applying decisions with act; opts configure its queue
// consumer (logger, remembered decisions, max attempts).
func NewConsumer(client redis.UniversalClient, act actuator.Actuator, cfg ConsumerConfig, opts ...queue.ConsumerOption) (*Consumer, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("nil redis client"))
	}
	if cfg.Block < 0 || cfg.Retry < 0 {
		errs = append(errs, errors.New("negative block or retry"))
	}
	qc, err := queue.NewConsumer(act, opts...)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: consumer: %w", ErrInvalidConfig, err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Block == 0 {
		cfg.Block = time.Second
	}
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	return &Consumer{client: client, cfg: cfg, stream: cfg.Prefix + ":stream", qc: qc}, nil
}

// Stats returns what the consumer did with the decisions it read.
func (c *Consumer) Stats() queue.Stats { return c.qc.Stats() }

// Sync applies each target's stored decision and marks the stream's end as read: what
// Run does first. It returns the number of targets read.
func (c *Consumer) Sync(ctx context.Context) (int, error) {
	last := "0-0"
	msgs, err := c.client.XRevRangeN(ctx, c.stream, "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("redisstate: consumer: read the stream's end: %w", err)
	}
	if len(msgs) == 1 {
		last = msgs[0].ID
	}
	n := 0
	iter := c.client.Scan(ctx, 0, c.cfg.Prefix+":t:*", 100).Iterator()
	for iter.Next(ctx) {
		ev, err := c.client.HGet(ctx, iter.Val(), "event").Result()
		if err != nil {
			return n, fmt.Errorf("redisstate: consumer: read %s: %w", iter.Val(), err)
		}
		if err := c.handle(ctx, []byte(ev)); err != nil {
			return n, err
		}
		n++
	}
	if err := iter.Err(); err != nil {
		return n, fmt.Errorf("redisstate: consumer: scan targets: %w", err)
	}
	c.mu.Lock()
	c.lastID = last
	c.mu.Unlock()
	return n, nil
}

// Poll applies the stream's entries after the last one handled, waiting up to block
// for some when there are none (0: no wait), and returns how many it handled. Before
// the first [Consumer.Sync] it syncs.
func (c *Consumer) Poll(ctx context.Context, block time.Duration) (int, error) {
	c.mu.Lock()
	last := c.lastID
	c.mu.Unlock()
	if last == "" {
		if _, err := c.Sync(ctx); err != nil {
			return 0, err
		}
		c.mu.Lock()
		last = c.lastID
		c.mu.Unlock()
	}
	args := &redis.XReadArgs{Streams: []string{c.stream, last}, Count: 100, Block: -1}
	if block > 0 {
		args.Block = block
	}
	res, err := c.client.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisstate: consumer: read the stream: %w", err)
	}
	n := 0
	for _, s := range res {
		for _, m := range s.Messages {
			ev, _ := m.Values["event"].(string)
			if err := c.handle(ctx, []byte(ev)); err != nil {
				return n, err
			}
			c.mu.Lock()
			c.lastID = m.ID
			c.mu.Unlock()
			n++
		}
	}
	return n, nil
}

// handle applies one event, retrying while the queue consumer asks for it.
func (c *Consumer) handle(ctx context.Context, ev []byte) error {
	for {
		err := c.qc.Handle(ctx, ev)
		if err == nil {
			return nil
		}
		t := time.NewTimer(c.cfg.Retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Run syncs, then follows the stream until ctx ends, and returns ctx's error. A failed
// read of Redis is retried every Retry.
func (c *Consumer) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if _, err := c.Poll(ctx, c.cfg.Block); err != nil && ctx.Err() == nil {
			t := time.NewTimer(c.cfg.Retry)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
	return ctx.Err()
}
