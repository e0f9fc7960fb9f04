package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
)

// Actuator defaults.
const (
	DefaultPrefix = "autoscalelua:scale"
	DefaultMaxLen = 10000
)

// Errors of the actuator.
var (
	// ErrStaleToken reports a write fenced with a token older than the lock's
	// counter: the writer was deposed. It is marked [actuator.Permanent].
	ErrStaleToken = errors.New("redisstate: stale fencing token")
	// ErrNotLeader reports a fenced actuator asked to scale while its elector does not
	// lead. It is marked [actuator.Permanent].
	ErrNotLeader = errors.New("redisstate: not the leader")
)

// ActuatorConfig configures an [Actuator]. The zero value of every field means its
// default.
type ActuatorConfig struct {
	// Prefix starts every key: Prefix+":t:"+target for a target's state (a hash),
	// Prefix+":stream" for the stream of decisions. Default [DefaultPrefix].
	Prefix string
	// MaxLen caps the stream (XADD MAXLEN). Default [DefaultMaxLen].
	MaxLen int64
	// Source is the CloudEvents source of the events written. Default
	// "autoscalelua/redisstate".
	Source string
}

func (c ActuatorConfig) withDefaults() ActuatorConfig {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxLen == 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.Source == "" {
		c.Source = "autoscalelua/redisstate"
	}
	return c
}

// ActuatorOption configures an [Actuator].
type ActuatorOption func(*Actuator) error

// WithFence fences every write with a token of e's lock: the request's own
// (actuator.Sequence.Term, which the loop takes from e at the tick that decided), or
// else e's current one, and a call without either (e does not lead) fails with
// [ErrNotLeader]. A write whose token a newer leader has superseded fails in Redis with
// [ErrStaleToken].
func WithFence(e *Elector) ActuatorOption {
	return func(a *Actuator) error {
		if e == nil {
			return errors.New("nil elector")
		}
		a.fence = e
		return nil
	}
}

// Actuator writes each desired count to Redis, "the shared configuration store" of a
// fleet that reads its size from there: the target's hash (replicas, decision, time,
// token, event) and an entry on a capped stream (XADD MAXLEN), both in one script, so
// that a [Consumer] (or any reader) sees either both or neither. It is idempotent (the
// same decision ID again changes nothing) and never goes backwards (a decision older
// than the target's stored one is ignored). It is an actuator.ReplicaReader too. An
// Actuator is safe for concurrent use.
type Actuator struct {
	client redis.UniversalClient
	cfg    ActuatorConfig
	stream string
	fence  *Elector
}

var (
	_ actuator.Actuator      = (*Actuator)(nil)
	_ actuator.ReplicaReader = (*Actuator)(nil)
)

// NewActuator returns an actuator writing through client.
func NewActuator(client redis.UniversalClient, cfg ActuatorConfig, opts ...ActuatorOption) (*Actuator, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("nil redis client"))
	}
	if cfg.MaxLen < 0 {
		errs = append(errs, fmt.Errorf("max length %d is negative", cfg.MaxLen))
	}
	a := &Actuator{client: client, cfg: cfg.withDefaults()}
	for _, o := range opts {
		if err := o(a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: actuator: %w", ErrInvalidConfig, err)
	}
	a.stream = a.cfg.Prefix + ":stream"
	return a, nil
}

// Stream is the key of the stream of decisions.
func (a *Actuator) Stream() string { return a.stream }

func (a *Actuator) targetKey(t actuator.Target) string { return a.cfg.Prefix + ":t:" + t.String() }

// scaleScript applies a decision.
//
//	KEYS[1] the target's hash; KEYS[2] the stream; KEYS[3] the fencing-token counter
//	ARGV[1] replicas; ARGV[2] decision ID; ARGV[3] decision time (ns, 20 digits, so
//	that strings compare as numbers); ARGV[4] token (-1: not fenced); ARGV[5] max
//	length; ARGV[6] the event
//
// It returns 1 when applied, 0 for the same decision again, -1 for an older decision,
// or an error reply starting with STALETOKEN.
var scaleScript = redis.NewScript(`
local tok = tonumber(ARGV[4])
if tok >= 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tok < cur then
    return redis.error_reply('STALETOKEN token ' .. tok .. ' is older than ' .. cur)
  end
end
local last = redis.call('HMGET', KEYS[1], 'decision', 'time')
if last[1] == ARGV[2] then return 0 end
if last[2] and last[2] > ARGV[3] then return -1 end
redis.call('HSET', KEYS[1], 'replicas', ARGV[1], 'decision', ARGV[2], 'time', ARGV[3], 'token', ARGV[4], 'event', ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'event', ARGV[6])
return 1
`)

// Scale writes req; with [WithFence], fenced by the request's term or the elector's
// token.
func (a *Actuator) Scale(ctx context.Context, req actuator.Request) error {
	tok := int64(-1)
	if a.fence != nil {
		t, ok := req.Seq.Term, req.Seq.Term != 0
		if !ok {
			t, ok = a.fence.Token()
		}
		if !ok {
			return actuator.Permanent(fmt.Errorf("%w: %s", ErrNotLeader, a.fence.Identity()))
		}
		tok = int64(t)
	}
	return a.scale(ctx, req, tok)
}

// ScaleFenced writes req fenced by token, whatever the elector says now: for a call
// that took its token earlier (at decision time) and reaches Redis later.
func (a *Actuator) ScaleFenced(ctx context.Context, req actuator.Request, token uint64) error {
	return a.scale(ctx, req, int64(token))
}

func (a *Actuator) scale(ctx context.Context, req actuator.Request, tok int64) error {
	if err := req.Validate(); err != nil {
		return actuator.Permanent(err)
	}
	ev, err := queue.Encode(req, a.cfg.Source)
	if err != nil {
		return actuator.Permanent(err)
	}
	fenceKey := a.cfg.Prefix + ":nofence"
	if a.fence != nil {
		fenceKey = a.fence.tokenKey
	}
	at := fmt.Sprintf("%020d", req.Time.UnixNano())
	err = scaleScript.Run(ctx, a.client, []string{a.targetKey(req.Target), a.stream, fenceKey},
		req.Replicas, req.DecisionID, at, tok, a.cfg.MaxLen, ev).Err()
	switch {
	case err == nil:
		return nil
	case strings.HasPrefix(err.Error(), "STALETOKEN"):
		return actuator.Permanent(fmt.Errorf("redisstate: scale %s: %w: %w", req.Target, ErrStaleToken, err))
	case strings.HasPrefix(err.Error(), "WRONGTYPE"):
		return actuator.Permanent(fmt.Errorf("redisstate: scale %s: key %s: %w", req.Target, a.targetKey(req.Target), err))
	}
	return fmt.Errorf("redisstate: scale %s: %w", req.Target, err)
}

// Replicas returns the count last written for t; an error wrapping
// [actuator.ErrUnknownTarget] when none was.
func (a *Actuator) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	s, err := a.client.HGet(ctx, a.targetKey(t), "replicas").Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstate: %s: %w", t, actuator.ErrUnknownTarget)
	}
	if err != nil {
		return 0, fmt.Errorf("redisstate: replicas of %s: %w", t, err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("redisstate: replicas of %s: %q is not a count", t, s)
	}
	return n, nil
}
