package actuator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors callers branch on with [errors.Is].
var (
	// ErrInvalidRequest reports a [Request] or [Target] that fails validation.
	// Actuators return it marked [Permanent]: retrying cannot fix it.
	ErrInvalidRequest = errors.New("actuator: invalid request")
	// ErrUnknownTarget reports a target the actuator does not know, for example
	// a [ReplicaReader] asked about a target it never scaled.
	ErrUnknownTarget = errors.New("actuator: unknown target")
	// ErrInvalidConfig reports a bad argument or option to a constructor such
	// as [Retry].
	ErrInvalidConfig = errors.New("actuator: invalid config")
)

// maxFieldLen bounds each [Target] field; it is the longest Kubernetes name
// (a DNS subdomain).
const maxFieldLen = 253

// Target names a scalable thing. It is a comparable value and can be used as a
// map key.
type Target struct {
	// Name is the key used by policies, decisions and metrics, e.g. "checkout".
	// Required; at most 253 bytes of printable UTF-8 without '/'.
	Name string
	// Namespace is optional, for actuators that need it (Kubernetes). At most
	// 253 bytes of printable UTF-8 without '/'.
	Namespace string
	// Kind is an optional resource kind, e.g. "deployments.apps"; actuators
	// that need it document it. At most 253 bytes of printable UTF-8 without
	// '/' or ':'.
	Kind string
}

// String returns the target as "[kind:][namespace/]name", for example
// "checkout", "shop/checkout" or "deployments.apps:shop/checkout". For a valid
// target the form is unambiguous, so it serves as a map key in logs and
// caches.
func (t Target) String() string {
	var b strings.Builder
	b.Grow(len(t.Kind) + len(t.Namespace) + len(t.Name) + 2)
	if t.Kind != "" {
		b.WriteString(t.Kind)
		b.WriteByte(':')
	}
	if t.Namespace != "" {
		b.WriteString(t.Namespace)
		b.WriteByte('/')
	}
	b.WriteString(t.Name)
	return b.String()
}

// Validate reports every problem with t at once. The returned error wraps
// [ErrInvalidRequest]; it is nil for a valid target.
func (t Target) Validate() error { return invalid(t.problems(nil)) }

func (t Target) problems(errs []error) []error {
	if t.Name == "" {
		errs = append(errs, errors.New("target name is required"))
	} else if err := checkField("target name", t.Name, "/"); err != nil {
		errs = append(errs, err)
	}
	if err := checkField("target namespace", t.Namespace, "/"); err != nil {
		errs = append(errs, err)
	}
	if err := checkField("target kind", t.Kind, "/:"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func checkField(what, v, forbidden string) error {
	switch {
	case len(v) > maxFieldLen:
		return fmt.Errorf("%s is %d bytes long, more than %d", what, len(v), maxFieldLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", what)
	case strings.ContainsAny(v, forbidden):
		return fmt.Errorf("%s %q contains one of %q", what, v, forbidden)
	case strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("%s %q contains a space or control character", what, v)
	}
	return nil
}

func invalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidRequest, errors.Join(errs...))
}

// Request is one decision to set a target's replicas. It is a value: an
// actuator must not modify it or keep a reference into it beyond the call.
type Request struct {
	// Target is the thing to scale; it must be valid.
	Target Target
	// Replicas is the desired replica count, >= 0.
	Replicas int
	// Previous is the replica count the loop believed current; -1 when
	// unknown.
	Previous int
	// Reason is a human readable explanation from the policy. Optional.
	Reason string
	// DecisionID is unique per decision and is the idempotency key remote
	// actuators forward; the loop generates it. Required, at most 256 bytes.
	DecisionID string
	// Time is when the decision was made. Required (non-zero), and in the
	// years 0000–9999 in UTC, the years RFC 3339 can write. Consumers of
	// queued decisions use it to never apply an older decision after a
	// newer one, when Seq cannot order the two.
	Time time.Time
	// Seq places the decision among the others for its target without a
	// clock; the loop sets it. Optional: the zero value means unknown.
	Seq Sequence
}

// Sequence orders decisions without clocks, for consumers that may receive
// them late, twice or out of order (the queue package's consumer): of two
// decisions, the one with the higher Term is newer when both have one and
// they differ; else, when both come from the same Stream, the one with the
// higher N is newer; else only their times can order them. The loop fills
// it in: Term from an elector that gives fencing tokens, Stream and N from
// the loop itself. The zero value means unknown.
type Sequence struct {
	// Term is the fencing token of the leader that made the decision: it
	// grows with each change of leader (a Kubernetes Lease's transitions,
	// for example). Zero when unknown.
	Term uint64
	// Stream names the producer whose decisions N counts: one loop, from
	// its construction to its end (a random name). At most 64 bytes of
	// printable ASCII without spaces; empty when unknown.
	Stream string
	// N counts the decisions of Stream, from 1, in the order they were
	// made. Zero when unknown; required when Stream is set.
	N uint64
}

// maxStreamLen bounds [Sequence.Stream].
const maxStreamLen = 64

// maxDecisionIDLen bounds [Request.DecisionID].
const maxDecisionIDLen = 256

// Validate reports every problem with r at once. The returned error wraps
// [ErrInvalidRequest]; it is nil for a valid request.
func (r Request) Validate() error {
	errs := r.Target.problems(nil)
	if r.Replicas < 0 {
		errs = append(errs, fmt.Errorf("replicas %d is negative", r.Replicas))
	}
	if r.Previous < -1 {
		errs = append(errs, fmt.Errorf("previous %d is less than -1 (unknown)", r.Previous))
	}
	switch {
	case r.DecisionID == "":
		errs = append(errs, errors.New("decision id is required"))
	case len(r.DecisionID) > maxDecisionIDLen:
		errs = append(errs, fmt.Errorf("decision id is %d bytes long, more than %d", len(r.DecisionID), maxDecisionIDLen))
	case !utf8.ValidString(r.DecisionID):
		errs = append(errs, errors.New("decision id is not valid UTF-8"))
	}
	switch {
	case len(r.Seq.Stream) > maxStreamLen:
		errs = append(errs, fmt.Errorf("sequence stream is %d bytes long, more than %d", len(r.Seq.Stream), maxStreamLen))
	case strings.IndexFunc(r.Seq.Stream, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0:
		errs = append(errs, fmt.Errorf("sequence stream %q is not printable ASCII without spaces", r.Seq.Stream))
	case r.Seq.Stream != "" && r.Seq.N == 0:
		errs = append(errs, errors.New("sequence number is required with a stream"))
	}
	if r.Time.IsZero() {
		errs = append(errs, errors.New("decision time is required"))
	} else if y := r.Time.UTC().Year(); y < 0 || y > 9999 {
		errs = append(errs, fmt.Errorf("decision time is year %d in UTC, outside 0000-9999", y))
	}
	return invalid(errs)
}

// Actuator sets a target's replicas.
//
// Scale must be idempotent ("set replicas to n", not "add n"), must return
// promptly once ctx is done, and is called from the control plane only, never
// on a request path. An error is retryable unless it is marked with
// [Permanent]. Implementations say whether they are safe for concurrent use;
// every actuator in this module is.
type Actuator interface {
	Scale(ctx context.Context, req Request) error
}

// ReplicaReader is an optional ability of an [Actuator]: report a target's
// current replica count. It returns an error wrapping [ErrUnknownTarget] when
// the target does not exist or is not known.
type ReplicaReader interface {
	Replicas(ctx context.Context, t Target) (int, error)
}

// Func adapts an ordinary function to the [Actuator] interface. A nil Func
// returns [ErrInvalidRequest] marked permanent rather than panicking.
type Func func(ctx context.Context, req Request) error

var _ Actuator = Func(nil)

// Scale calls f(ctx, req).
func (f Func) Scale(ctx context.Context, req Request) error {
	if f == nil {
		return Permanent(fmt.Errorf("%w: nil actuator.Func", ErrInvalidRequest))
	}
	return f(ctx, req)
}

// permanentError marks an error as not retryable.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not retryable: [Retry] and the retrying actuators of
// this module return it at once. The result wraps err, so [errors.Is] and
// [errors.As] still see through it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	if IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps (including through
// [errors.Join]), was marked with [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
