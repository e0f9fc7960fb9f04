package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrInvalidConfig reports a bad argument or option.
var ErrInvalidConfig = errors.New("queue/kafka: invalid configuration")

// Publisher is a [queue.Publisher] over a franz-go client. It is safe for
// concurrent use; it does not own the client.
type Publisher struct {
	cl    *kgo.Client
	topic string
}

var _ queue.Publisher = (*Publisher)(nil)

// NewPublisher returns a [Publisher] that produces to topic with cl.
func NewPublisher(cl *kgo.Client, topic string) (*Publisher, error) {
	var errs []error
	if cl == nil {
		errs = append(errs, errors.New("nil client"))
	}
	if topic == "" {
		errs = append(errs, errors.New("empty topic"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return &Publisher{cl: cl, topic: topic}, nil
}

// Publish produces e as one record (key [queue.Event.Key], value the event,
// header content-type [queue.ContentType]) and waits for the brokers'
// acknowledgement or the end of ctx. A nil error means the record is
// written.
func (p *Publisher) Publish(ctx context.Context, e queue.Event) error {
	rec := &kgo.Record{
		Topic:   p.topic,
		Key:     []byte(e.Key),
		Value:   e.Data,
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte(queue.ContentType)}},
	}
	if err := p.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("queue/kafka: produce to %s: %w", p.topic, err)
	}
	return nil
}

// Subscriber feeds the records of a topic, as a member of a consumer group,
// to a [queue.Handler], normally a [*queue.Consumer]. It owns its franz-go
// client, which lives exactly as long as [Subscriber.Run].
type Subscriber struct {
	h       queue.Handler
	topic   string
	group   string
	kopts   []kgo.Opt
	base    time.Duration
	max     time.Duration
	logger  *slog.Logger
	optErrs []error // bad options, reported by NewSubscriber
}

// SubscriberOption configures a [Subscriber].
type SubscriberOption func(*Subscriber)

// WithClientOptions adds franz-go client options: seed brokers (required),
// TLS, SASL and so on. The subscriber adds ConsumeTopics, ConsumerGroup,
// DisableAutoCommit and BlockRebalanceOnPoll itself.
func WithClientOptions(opts ...kgo.Opt) SubscriberOption {
	return func(s *Subscriber) { s.kopts = append(s.kopts, opts...) }
}

// WithRetryBackoff sets the back-off between handler retries of one record:
// exponential with full jitter from base, capped at maxDelay. Defaults 100 ms
// and 5 s; values <= 0 keep the default.
func WithRetryBackoff(base, maxDelay time.Duration) SubscriberOption {
	return func(s *Subscriber) {
		if base > 0 {
			s.base = base
		}
		if maxDelay > 0 {
			s.max = maxDelay
		}
	}
}

// WithSubscriberLogger logs fetch, handler and commit errors at Warn level.
// Default [slog.Default], the default logger
// everywhere in this module.
func WithSubscriberLogger(l *slog.Logger) SubscriberOption {
	return func(s *Subscriber) {
		if l == nil {
			s.optErrs = append(s.optErrs, errors.New("nil logger"))
			return
		}
		s.logger = l
	}
}

// NewSubscriber returns a [Subscriber] of topic in consumer group group.
func NewSubscriber(h queue.Handler, topic, group string, opts ...SubscriberOption) (*Subscriber, error) {
	var errs []error
	if h == nil {
		errs = append(errs, errors.New("nil handler"))
	}
	if topic == "" {
		errs = append(errs, errors.New("empty topic"))
	}
	if group == "" {
		errs = append(errs, errors.New("empty consumer group"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	s := &Subscriber{
		h: h, topic: topic, group: group,
		base: 100 * time.Millisecond, max: 5 * time.Second,
		logger: slog.Default(),
	}
	for _, o := range opts {
		if o == nil {
			s.optErrs = append(s.optErrs, errors.New("nil option"))
			continue
		}
		o(s)
	}
	if len(s.optErrs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(s.optErrs...))
	}
	s.max = max(s.max, s.base)
	return s, nil
}

// Run joins the group and hands each record to the handler, in order per
// partition, until ctx ends; see the package documentation for the
// delivery rules. It returns nil when ctx ends, or an error if the client
// cannot be created.
func (s *Subscriber) Run(ctx context.Context) error {
	opts := append(append([]kgo.Opt(nil), s.kopts...),
		kgo.ConsumeTopics(s.topic),
		kgo.ConsumerGroup(s.group),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("queue/kafka: new client: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, 256)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/kafka: fetch failed",
				slog.String("topic", topic), slog.Int("partition", int(partition)), slog.String("error", err.Error()))
		})
		var done []*kgo.Record
		stopped := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if stopped || !s.handle(ctx, r) {
					stopped = true
					return
				}
				done = append(done, r)
			}
		})
		if len(done) > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := cl.CommitRecords(cctx, done...); err != nil {
				// The records come back after a rebalance; the consumer
				// deduplicates them.
				s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/kafka: commit failed", slog.String("error", err.Error()))
			}
			cancel()
		}
		cl.AllowRebalance()
		if stopped {
			return nil
		}
	}
}

// handle retries one record until the handler accepts it; false means ctx
// ended first.
func (s *Subscriber) handle(ctx context.Context, r *kgo.Record) bool {
	for attempt := 0; ; attempt++ {
		err := s.h.Handle(ctx, r.Value)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/kafka: handler failed, retrying",
			slog.Int("partition", int(r.Partition)), slog.Int64("offset", r.Offset), slog.String("error", err.Error()))
		t := time.NewTimer(actuator.Backoff(attempt, s.base, s.max, rand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
