package webhook

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Receiver defaults.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultTolerance    = 5 * time.Minute
	DefaultSeenKeys     = 10000
)

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
//   - body at most the limit (default 64 KiB), else 413;
//   - [SignatureHeader] parses and one v1 signature matches (compared with
//     [hmac.Equal]), else 401;
//   - its timestamp is within the tolerance of the receiver's clock (default
//     5 minutes), else 401 (a replay or a skewed clock);
//   - the body decodes strictly with [Decode], and [IdempotencyKeyHeader]
//     equals its decision_id, else 400;
//   - the idempotency key was not seen within the tolerance: a key whose
//     request succeeded is answered 200 again, with "Idempotent-Replayed:
//     true", without calling the actuator; a key still being applied is
//     answered 409; a key seen with a different body is answered 409;
//   - then the actuator is called: success is 200; a failure that retrying
//     cannot fix ([actuator.IsPermanent], [actuator.ErrInvalidRequest],
//     [actuator.ErrUnknownTarget]) is 422, so the sender does not retry; any
//     other failure is 502, so it does. A failed key is forgotten, so the
//     sender's retry is applied.
//
// Seen keys are kept in a bounded LRU (default 10000 keys) for the
// tolerance; beyond that the timestamp check rejects a replay anyway. The
// actuator runs with the request's context. A Receiver is safe for
// concurrent use.
type Receiver struct {
	secret    []byte
	act       actuator.Actuator
	maxBody   int64
	tolerance time.Duration
	now       func() time.Time
	logger    *slog.Logger

	mu   sync.Mutex
	seen *simplelru.LRU[string, *seenKey]
}

type seenKey struct {
	body [sha256.Size]byte
	at   time.Time // when first received, by the receiver's clock
	done bool      // applied successfully; false while in progress
}

var _ http.Handler = (*Receiver)(nil)

type receiverConfig struct {
	maxBody   int64
	tolerance time.Duration
	now       func() time.Time
	logger    *slog.Logger
	seenKeys  int
	errs      []error
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
// receiver's clock, in either direction, and how long idempotency keys are
// remembered. Default [DefaultTolerance]; it must be positive.
func WithTolerance(d time.Duration) ReceiverOption {
	return func(c *receiverConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("tolerance %s is not positive", d))
		}
		c.tolerance = d
	}
}

// WithSeenKeys sets how many idempotency keys are remembered (least
// recently used are forgotten first). Default [DefaultSeenKeys]; it must be
// positive.
func WithSeenKeys(n int) ReceiverOption {
	return func(c *receiverConfig) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("seen keys %d is not positive", n))
		}
		c.seenKeys = n
	}
}

// WithReceiverClock sets the clock used for the timestamp check and key
// expiry. Default [time.Now].
func WithReceiverClock(now func() time.Time) ReceiverOption {
	return func(c *receiverConfig) {
		if now != nil {
			c.now = now
		}
	}
}

// WithReceiverLogger logs rejected requests at Info and actuator failures at
// Error level. Default: no logging.
func WithReceiverLogger(l *slog.Logger) ReceiverOption {
	return func(c *receiverConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// NewReceiver returns a [Receiver] that verifies with secret (not empty; it
// is copied) and applies requests with a. Bad arguments return an error
// wrapping [ErrInvalidConfig].
func NewReceiver(secret []byte, a actuator.Actuator, opts ...ReceiverOption) (*Receiver, error) {
	cfg := receiverConfig{
		maxBody:   DefaultMaxBodyBytes,
		tolerance: DefaultTolerance,
		now:       time.Now,
		logger:    slog.New(slog.DiscardHandler),
		seenKeys:  DefaultSeenKeys,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
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
	seen, err := simplelru.NewLRU[string, *seenKey](cfg.seenKeys, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Receiver{
		secret:    bytes.Clone(secret),
		act:       a,
		maxBody:   cfg.maxBody,
		tolerance: cfg.tolerance,
		now:       cfg.now,
		logger:    cfg.logger,
		seen:      seen,
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
	now := rc.now()
	if err := VerifySignature(rc.secret, sigs[0], body, now, rc.tolerance); err != nil {
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

	rc.mu.Lock()
	if prev, ok := rc.seen.Get(key); ok && now.Sub(prev.at) <= rc.tolerance {
		done, same := prev.done, prev.body == sum
		rc.mu.Unlock()
		switch {
		case !same:
			rc.reject(w, r, http.StatusConflict, textKeyReused, nil)
		case !done:
			rc.reject(w, r, http.StatusConflict, textInProgress, nil)
		default:
			w.Header().Set(replayedHeader, "true")
			writeText(w, http.StatusOK, textOK)
		}
		return
	}
	entry := &seenKey{body: sum, at: now}
	rc.seen.Add(key, entry)
	rc.mu.Unlock()

	err = rc.act.Scale(ctx, req)

	rc.mu.Lock()
	if err == nil {
		entry.done = true
	} else if cur, ok := rc.seen.Peek(key); ok && cur == entry {
		rc.seen.Remove(key)
	}
	rc.mu.Unlock()

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
