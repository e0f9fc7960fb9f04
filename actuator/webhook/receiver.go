package webhook

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Receiver defaults.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultTolerance    = 5 * time.Minute
	DefaultSeenKeys     = 10000
	DefaultReadTimeout  = 5 * time.Second
)

// inProgressRetryAfter is the wait a 409 "in progress" asks for.
const inProgressRetryAfter = time.Second

// Fixed response texts; clients never see an error's text.
const (
	textOK          = "ok\n"
	textMethod      = "method not allowed"
	textTooLarge    = "request body too large"
	textBadBody     = "malformed request"
	textBadKey      = "missing or mismatched idempotency key"
	textBadSig      = "invalid signature"
	textStale       = "stale or future timestamp"
	textInProgress  = "request with this idempotency key in progress"
	textKeyReused   = "idempotency key reused with a different body"
	textFull        = "too many recent requests"
	textRejected    = "scale request rejected"
	textFailed      = "scale failed"
	replayedHeader  = "Idempotent-Replayed"
	allowHeaderPOST = "POST"
)

// Receiver is an [http.Handler] that verifies signed scale requests sent by
// an [Actuator] (or anything following the same scheme) and applies them
// with an [actuator.Actuator]. It checks, in order, answering with a short
// fixed text:
//
//   - method is POST, else 405;
//   - body at most the limit (default 64 KiB), else 413, read within the
//     read timeout (default 5 s; see below), else 400;
//   - [SignatureHeader] parses and one v1 signature matches (compared with
//     [hmac.Equal]), else 401;
//   - its timestamp is within the tolerance of the receiver's clock (default
//     5 minutes), else 401 (a replay or a skewed clock);
//   - the body decodes strictly with [Decode], and [IdempotencyKeyHeader]
//     equals its decision_id, else 400;
//   - the idempotency key was not seen while a signature for it could
//     still verify: a key whose request succeeded is answered 200 again,
//     with "Idempotent-Replayed: true", without calling the actuator; a key
//     still being applied (the sender's earlier attempt) is answered 409
//     with "Retry-After: 1", which the sender's loop retries; a key seen with
//     a different body is answered 422 (the draft IETF Idempotency-Key
//     header's codes), which it does not;
//   - the set of remembered keys has room, else 503 with a Retry-After of
//     the seconds until the oldest key may be forgotten (see below);
//   - then the actuator is called: success is 200; a failure that retrying
//     cannot fix ([actuator.IsPermanent], [actuator.ErrInvalidRequest],
//     [actuator.ErrUnknownTarget]) is 422, so the sender does not retry; any
//     other failure is 502, so it does. A failed key is forgotten, so the
//     sender's retry is applied.
//
// # At most once
//
// A request is applied at most once: its key is remembered until the
// latest signature seen for it expires, at its timestamp plus the
// tolerance. That is up to twice the tolerance after arrival, for a sender
// whose clock runs ahead; after it, every copy of the request fails the
// timestamp check. (A sender's retries carry later timestamps and extend
// the key's life.) The receiver never forgets a key that could still
// verify: when the set is full (default 10000 keys) of keys that can, a new
// key is refused with 503 and a Retry-After, and the sender's loop retries
// it then. Size the set by the rate of decisions: it must hold every request
// of the last two tolerances (10000 keys hold 16 decisions a second for the
// default 5 minutes); a key holds its ID, a SHA-256 of the body and an
// expiry time.
//
// # Slow clients
//
// Before reading the body, the receiver sets the connection's read
// deadline to the read timeout ([http.ResponseController.SetReadDeadline]),
// so a client that trickles its body cannot hold a connection and a
// goroutine for long. That deadline replaces the server's ReadTimeout for
// the body. A handler cannot bound how long headers take to
// arrive: serve the receiver with [NewServer], or set the [http.Server]
// timeouts it documents, or slow clients hold connections open without
// limit.
//
// The actuator runs with the request's context. A Receiver is safe for
// concurrent use.
type Receiver struct {
	secret      []byte
	act         actuator.Actuator
	maxBody     int64
	tolerance   time.Duration
	readTimeout time.Duration
	maxKeys     int
	clock       metrics.Clock
	logger      *slog.Logger

	mu       sync.Mutex
	seen     map[string]*seenKey
	byExpiry expiryHeap // the keys of seen that may expire: all but those popped while in progress
}

type seenKey struct {
	key     string
	body    [sha256.Size]byte
	expires time.Time // when the latest signature seen for the key stops verifying
	done    bool      // applied successfully; false while in progress
	index   int       // in byExpiry; -1 when not in it
}

// expiryHeap orders seen keys by expiry, soonest first (container/heap).
type expiryHeap []*seenKey

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	k := x.(*seenKey)
	k.index = len(*h)
	*h = append(*h, k)
}
func (h *expiryHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.index = -1
	return k
}

var _ http.Handler = (*Receiver)(nil)

type receiverConfig struct {
	maxBody     int64
	tolerance   time.Duration
	readTimeout time.Duration
	clock       metrics.Clock
	logger      *slog.Logger
	seenKeys    int
	errs        []error
}

// ReceiverOption configures a [Receiver].
type ReceiverOption func(*receiverConfig)

// WithMaxBodyBytes sets the largest accepted body, in bytes. Default
// [DefaultMaxBodyBytes]; it must be positive.
func WithMaxBodyBytes(n int64) ReceiverOption {
	return func(c *receiverConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("max body bytes %d is not positive", n))
		}
		c.maxBody = n
	}
}

// WithTolerance sets how far a signature timestamp may be from the
// receiver's clock, in either direction; an idempotency key is remembered
// until its signature's timestamp plus the tolerance. Default
// [DefaultTolerance]; it must be positive.
func WithTolerance(d time.Duration) ReceiverOption {
	return func(c *receiverConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("tolerance %s is not positive", d))
		}
		c.tolerance = d
	}
}

// WithSeenKeys sets how many idempotency keys can be remembered at once;
// when that many can all still verify, new keys are refused with 503 (see
// [Receiver] for how to size it). Default [DefaultSeenKeys]; it must be
// positive.
func WithSeenKeys(n int) ReceiverOption {
	return func(c *receiverConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("seen keys %d is not positive", n))
		}
		c.seenKeys = n
	}
}

// WithReadTimeout sets how long the receiver waits for a request's body,
// from when its handler starts, before it gives up on the connection.
// Default [DefaultReadTimeout]; it must be positive. The deadline is on
// the real clock, not the one of [WithReceiverClock]: it bounds network
// reads.
func WithReadTimeout(d time.Duration) ReceiverOption {
	return func(c *receiverConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("read timeout %s is not positive", d))
		}
		c.readTimeout = d
	}
}

// WithReceiverClock sets the clock used for the timestamp check and key
// expiry. Default [metrics.NewSystemClock].
func WithReceiverClock(clk metrics.Clock) ReceiverOption {
	return func(c *receiverConfig) {
		if clk == nil {
			c.errs = append(c.errs, errors.New("nil clock"))
			return
		}
		c.clock = clk
	}
}

// WithReceiverLogger logs rejected requests at Info and actuator failures at
// Error level. Default [slog.Default], the default logger everywhere in this
// module.
func WithReceiverLogger(l *slog.Logger) ReceiverOption {
	return func(c *receiverConfig) {
		if l == nil {
			c.errs = append(c.errs, errors.New("nil logger"))
			return
		}
		c.logger = l
	}
}

// NewReceiver returns a [Receiver] that verifies with secret (not empty; it
// is copied) and applies requests with a. Bad arguments return an error
// wrapping [ErrInvalidConfig].
func NewReceiver(secret []byte, a actuator.Actuator, opts ...ReceiverOption) (*Receiver, error) {
	cfg := receiverConfig{
		maxBody:     DefaultMaxBodyBytes,
		tolerance:   DefaultTolerance,
		readTimeout: DefaultReadTimeout,
		clock:       metrics.NewSystemClock(),
		logger:      slog.Default(),
		seenKeys:    DefaultSeenKeys,
	}
	for _, o := range opts {
		if o == nil {
			cfg.errs = append(cfg.errs, errors.New("nil option"))
			continue
		}
		o(&cfg)
	}
	errs := cfg.errs
	if len(secret) == 0 {
		errs = append(errs, errors.New("signing secret is empty"))
	}
	if a == nil {
		errs = append(errs, errors.New("nil actuator"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return &Receiver{
		secret:      bytes.Clone(secret),
		act:         a,
		maxBody:     cfg.maxBody,
		tolerance:   cfg.tolerance,
		readTimeout: cfg.readTimeout,
		maxKeys:     cfg.seenKeys,
		clock:       cfg.clock,
		logger:      cfg.logger,
		seen:        make(map[string]*seenKey),
	}, nil
}

// ServeHTTP verifies and applies one request; see [Receiver].
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", allowHeaderPOST)
		http.Error(w, textMethod, http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > rc.maxBody {
		rc.reject(w, r, http.StatusRequestEntityTooLarge, textTooLarge, nil)
		return
	}
	// A handler can bound the body's read, not the headers' (see Receiver).
	// ErrNotSupported (a ResponseWriter that is not a connection's) is fine.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(rc.readTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			rc.reject(w, r, http.StatusRequestEntityTooLarge, textTooLarge, nil)
			return
		}
		rc.reject(w, r, http.StatusBadRequest, textBadBody, err)
		return
	}
	sigs := r.Header.Values(SignatureHeader)
	if len(sigs) != 1 {
		rc.reject(w, r, http.StatusUnauthorized, textBadSig, ErrBadSignature)
		return
	}
	now := rc.clock.Now()
	sig, err := verify(rc.secret, sigs[0], body, now, rc.tolerance)
	if err != nil {
		text := textBadSig
		if errors.Is(err, ErrStaleTimestamp) {
			text = textStale
		}
		rc.reject(w, r, http.StatusUnauthorized, text, err)
		return
	}
	req, err := Decode(body)
	if err != nil {
		rc.reject(w, r, http.StatusBadRequest, textBadBody, err)
		return
	}
	if keys := r.Header.Values(IdempotencyKeyHeader); len(keys) != 1 || keys[0] != req.DecisionID {
		rc.reject(w, r, http.StatusBadRequest, textBadKey, nil)
		return
	}
	key, sum := req.DecisionID, sha256.Sum256(body)
	expires := time.Unix(sig.Timestamp, 0).Add(rc.tolerance)

	entry, status, wait := rc.admit(key, sum, expires, now)
	switch status {
	case http.StatusOK:
		w.Header().Set(replayedHeader, "true")
		writeText(w, http.StatusOK, textOK)
		return
	case http.StatusUnprocessableEntity:
		rc.reject(w, r, status, textKeyReused, nil)
		return
	case http.StatusConflict:
		w.Header().Set("Retry-After", retryAfterSeconds(wait))
		rc.reject(w, r, status, textInProgress, nil)
		return
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfterSeconds(wait))
		rc.reject(w, r, status, textFull, nil)
		return
	}

	err = rc.act.Scale(ctx, req)
	rc.finish(entry, err == nil)

	if err != nil {
		status, text := http.StatusBadGateway, textFailed
		if actuator.IsPermanent(err) || errors.Is(err, actuator.ErrInvalidRequest) || errors.Is(err, actuator.ErrUnknownTarget) {
			status, text = http.StatusUnprocessableEntity, textRejected
		}
		rc.logger.LogAttrs(ctx, slog.LevelError, "webhook: actuator failed",
			slog.String("target", req.Target.String()), slog.String("decision_id", key),
			slog.Int("status", status), slog.String("error", err.Error()))
		writeText(w, status, text+"\n")
		return
	}
	writeText(w, http.StatusOK, textOK)
}

// admit looks key up among the seen keys at now. A new key is remembered,
// in progress, until expires, and admit returns its entry and status 0. A
// key already seen has its life extended to expires, if later, and admit
// returns the status to answer: 200 (applied), 409 (in progress) or 422
// (another body). When the set is full of keys that may still verify,
// admit returns 503 and the wait until the first of them expires.
func (rc *Receiver) admit(key string, sum [sha256.Size]byte, expires, now time.Time) (*seenKey, int, time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.expire(now)
	if prev, ok := rc.seen[key]; ok {
		if prev.body != sum {
			return nil, http.StatusUnprocessableEntity, 0
		}
		if expires.After(prev.expires) {
			prev.expires = expires
			if prev.index >= 0 {
				heap.Fix(&rc.byExpiry, prev.index)
			} else { // expired while in progress, and alive again
				heap.Push(&rc.byExpiry, prev)
			}
		}
		if !prev.done {
			return nil, http.StatusConflict, inProgressRetryAfter
		}
		return nil, http.StatusOK, 0
	}
	if len(rc.seen) >= rc.maxKeys {
		wait := inProgressRetryAfter
		if len(rc.byExpiry) > 0 { // forgotten once past its expiry: a second later, in whole seconds
			wait = max(rc.byExpiry[0].expires.Sub(now)+time.Second, wait)
		}
		return nil, http.StatusServiceUnavailable, wait
	}
	entry := &seenKey{key: key, body: sum, expires: expires}
	rc.seen[key] = entry
	heap.Push(&rc.byExpiry, entry)
	return entry, 0, 0
}

// expire forgets the keys whose every signature has expired at now. A key
// still in progress leaves the heap but stays in the set, so a concurrent
// copy is still answered 409; finish forgets it.
func (rc *Receiver) expire(now time.Time) {
	for len(rc.byExpiry) > 0 && now.After(rc.byExpiry[0].expires) {
		k := heap.Pop(&rc.byExpiry).(*seenKey)
		if k.done {
			delete(rc.seen, k.key)
		}
	}
}

// finish records the end of entry's apply: a success is remembered until
// the key's signatures expire; a failure is forgotten, so the sender's
// retry is applied.
func (rc *Receiver) finish(entry *seenKey, ok bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if ok {
		entry.done = true
		if entry.index < 0 { // expired while in progress, never extended
			rc.forget(entry)
		}
		return
	}
	if entry.index >= 0 {
		heap.Remove(&rc.byExpiry, entry.index)
	}
	rc.forget(entry)
}

func (rc *Receiver) forget(entry *seenKey) {
	if rc.seen[entry.key] == entry {
		delete(rc.seen, entry.key)
	}
}

// retryAfterSeconds formats d as a Retry-After delay in whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}

func (rc *Receiver) reject(w http.ResponseWriter, r *http.Request, status int, text string, err error) {
	attrs := []slog.Attr{slog.Int("status", status), slog.String("reason", text), slog.String("remote", r.RemoteAddr)}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	rc.logger.LogAttrs(r.Context(), slog.LevelInfo, "webhook: request rejected", attrs...)
	writeText(w, status, text+"\n")
}

func writeText(w http.ResponseWriter, status int, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}
