package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidConfig reports a bad argument or option.
var ErrInvalidConfig = errors.New("queue/nats: invalid configuration")

// Defaults.
const (
	DefaultPublishRetries = 10
	DefaultMaxDeliver     = 10
	DefaultNakDelay       = time.Second
	DefaultAckWait        = 30 * time.Second
	DefaultFetchWait      = 2 * time.Second
	DefaultBatch          = 32
)

// Publisher is a [queue.Publisher] over JetStream. The stream that stores
// the subject is created by the user (see the package example). It is safe
// for concurrent use; it does not own the connection.
type Publisher struct {
	js      jetstream.JetStream
	subject string
	retries int
}

var _ queue.Publisher = (*Publisher)(nil)

// PublisherOption configures a [Publisher].
type PublisherOption func(*Publisher)

// WithPublishRetries sets how many times a publish is retried when
// JetStream has no responder yet (for example right after a server restart),
// 250 ms apart. Default [DefaultPublishRetries]; negative values mean 0.
func WithPublishRetries(n int) PublisherOption {
	return func(p *Publisher) { p.retries = max(n, 0) }
}

// NewPublisher returns a [Publisher] that publishes to subject on nc.
func NewPublisher(nc *natsgo.Conn, subject string, opts ...PublisherOption) (*Publisher, error) {
	var errs []error
	if nc == nil {
		errs = append(errs, errors.New("nil connection"))
	}
	if subject == "" {
		errs = append(errs, errors.New("empty subject"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	p := &Publisher{js: js, subject: subject, retries: DefaultPublishRetries}
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	return p, nil
}

// Publish stores e in JetStream and waits for the acknowledgement, until ctx
// ends (without a deadline, JetStream's default of 5 s applies). The decision
// ID is sent as Nats-Msg-Id so JetStream drops a re-published copy, and
// Content-Type is [queue.ContentType]. A nil error means the event is stored.
func (p *Publisher) Publish(ctx context.Context, e queue.Event) error {
	msg := natsgo.NewMsg(p.subject)
	msg.Data = e.Data
	msg.Header.Set("Content-Type", queue.ContentType)
	_, err := p.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(e.ID),
		jetstream.WithRetryAttempts(p.retries),
		jetstream.WithRetryWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("queue/nats: publish to %s: %w", p.subject, err)
	}
	return nil
}

// Subscriber feeds the messages of a durable JetStream pull consumer to a
// [queue.Handler], normally a [*queue.Consumer]. Run it in one goroutine; it
// does not own the connection.
type Subscriber struct {
	js      jetstream.JetStream
	stream  string
	cfg     jetstream.ConsumerConfig
	h       queue.Handler
	nak     time.Duration
	wait    time.Duration
	batch   int
	logger  *slog.Logger
	backoff func(attempt int) time.Duration
	optErrs []error // bad options, reported by NewSubscriber
}

// SubscriberOption configures a [Subscriber].
type SubscriberOption func(*Subscriber)

// WithFilterSubject consumes only messages on subject. Default: all of the
// stream's subjects.
func WithFilterSubject(subject string) SubscriberOption {
	return func(s *Subscriber) { s.cfg.FilterSubject = subject }
}

// WithMaxDeliver sets how many times JetStream delivers a message that is
// not acknowledged before it stops (a backstop: the [queue.Consumer] gives up
// first, after its own maximum). Default [DefaultMaxDeliver]; values below 1
// are raised to 1.
func WithMaxDeliver(n int) SubscriberOption {
	return func(s *Subscriber) { s.cfg.MaxDeliver = max(n, 1) }
}

// WithNakDelay sets how long JetStream waits before redelivering a message
// the handler failed. Default [DefaultNakDelay].
func WithNakDelay(d time.Duration) SubscriberOption {
	return func(s *Subscriber) {
		if d > 0 {
			s.nak = d
		}
	}
}

// WithAckWait sets how long JetStream waits for an acknowledgement before
// redelivering (when the subscriber died mid-message). Default
// [DefaultAckWait].
func WithAckWait(d time.Duration) SubscriberOption {
	return func(s *Subscriber) {
		if d > 0 {
			s.cfg.AckWait = d
		}
	}
}

// WithFetchWait sets how long one fetch waits for messages. Default
// [DefaultFetchWait].
func WithFetchWait(d time.Duration) SubscriberOption {
	return func(s *Subscriber) {
		if d > 0 {
			s.wait = d
		}
	}
}

// WithSubscriberLogger logs fetch and acknowledgement errors at Warn level.
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

// NewSubscriber returns a [Subscriber] for the durable consumer named
// durable on stream; Run creates or updates it.
func NewSubscriber(nc *natsgo.Conn, stream, durable string, h queue.Handler, opts ...SubscriberOption) (*Subscriber, error) {
	var errs []error
	if nc == nil {
		errs = append(errs, errors.New("nil connection"))
	}
	if stream == "" {
		errs = append(errs, errors.New("empty stream name"))
	}
	if durable == "" {
		errs = append(errs, errors.New("empty durable consumer name"))
	}
	if h == nil {
		errs = append(errs, errors.New("nil handler"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	s := &Subscriber{
		js:     js,
		stream: stream,
		cfg: jetstream.ConsumerConfig{
			Durable:       durable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			MaxDeliver:    DefaultMaxDeliver,
			AckWait:       DefaultAckWait,
		},
		h:      h,
		nak:    DefaultNakDelay,
		wait:   DefaultFetchWait,
		batch:  DefaultBatch,
		logger: slog.Default(),
		backoff: func(attempt int) time.Duration {
			return actuator.Backoff(attempt, 100*time.Millisecond, 5*time.Second, 0.5)
		},
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
	return s, nil
}

// Run creates or updates the durable consumer, then fetches messages and
// hands each to the handler until ctx ends: nil acknowledges the message, an
// error naks it for redelivery after the nak delay. Connection and server
// failures are logged and retried with back-off; Run keeps going across
// server restarts. It returns nil when ctx ends.
func (s *Subscriber) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		var err error
		cons, err = s.js.CreateOrUpdateConsumer(ctx, s.stream, s.cfg)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/nats: cannot create consumer, retrying",
			slog.String("stream", s.stream), slog.String("error", err.Error()))
		if !sleep(ctx, s.backoff(attempt)) {
			return nil
		}
	}
	failures := 0
	for ctx.Err() == nil {
		if err := s.fetch(ctx, cons); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/nats: fetch failed, retrying",
				slog.String("stream", s.stream), slog.String("error", err.Error()))
			if !sleep(ctx, s.backoff(failures)) {
				return nil
			}
			failures++
			continue
		}
		failures = 0
	}
	return nil
}

// fetch handles one batch.
func (s *Subscriber) fetch(ctx context.Context, cons jetstream.Consumer) error {
	fctx, cancel := context.WithTimeout(ctx, s.wait)
	defer cancel()
	batch, err := cons.Fetch(s.batch, jetstream.FetchContext(fctx))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		if herr := s.h.Handle(ctx, msg.Data()); herr != nil {
			err = msg.NakWithDelay(s.nak)
		} else {
			err = msg.Ack()
		}
		if err != nil {
			// The message comes back after the ack wait; the consumer
			// deduplicates it.
			s.logger.LogAttrs(ctx, slog.LevelWarn, "queue/nats: acknowledgement failed",
				slog.String("error", err.Error()))
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, natsgo.ErrTimeout) {
		return err
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
