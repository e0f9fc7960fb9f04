package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names used by the [Actuator] and the [Receiver].
const (
	// SignatureHeader carries the signature, "t=<unix seconds>,v1=<hex>".
	SignatureHeader = "Autoscalelua-Signature"
	// IdempotencyKeyHeader carries the decision ID; the receiver applies a
	// key at most once (see [Receiver]).
	IdempotencyKeyHeader = "Idempotency-Key"
)

// Signature errors. [VerifySignature] returns errors wrapping one of them.
var (
	// ErrBadSignature reports a missing or malformed signature header, or a
	// signature that does not match the body.
	ErrBadSignature = errors.New("webhook: bad signature")
	// ErrStaleTimestamp reports a signature whose timestamp is further from
	// the receiver's clock than the tolerance: a replay, or a skewed clock.
	ErrStaleTimestamp = errors.New("webhook: signature timestamp outside tolerance")
)

const (
	maxSignatureHeaderLen = 1024
	maxSignatures         = 8
)

// Signature is a parsed [SignatureHeader] value.
type Signature struct {
	// Timestamp is the "t" field, Unix seconds.
	Timestamp int64
	// V1 holds each "v1" field, decoded: HMAC-SHA256 sums of
	// "<t>.<body>". More than one lets a sender sign with an old and a new
	// secret while rotating.
	V1 [][]byte
}

// String formats s as a header value: "t=<t>,v1=<hex>[,v1=<hex>...]".
func (s Signature) String() string {
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(s.Timestamp, 10))
	for _, v := range s.V1 {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(v))
	}
	return b.String()
}

// Sign returns the [SignatureHeader] value for body signed with secret at
// time t:
//
//	t=<unix seconds>,v1=<lower-case hex of HMAC-SHA256(secret, "<unix seconds>.<body>")>
//
// The signed payload is the decimal timestamp, a full stop, and the body
// bytes exactly as sent (the [Actuator] sends no trailing newline). To check a
// captured request by hand:
//
//	printf '%s.%s' "$t" "$(cat body.json)" | openssl dgst -sha256 -hmac "$secret"
//
// and compare the hex digest with v1. (This is Stripe's webhook signature
// scheme with our header name.)
func Sign(secret, body []byte, t time.Time) string {
	ts := t.Unix()
	return Signature{Timestamp: ts, V1: [][]byte{mac(secret, ts, body)}}.String()
}

func mac(secret []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	var buf [24]byte
	m.Write(strconv.AppendInt(buf[:0], ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ParseSignature parses a [SignatureHeader] value: comma-separated key=value
// pairs with exactly one "t" (a canonical non-negative decimal integer) and
// one to eight "v1" (64 hex digits each). Keys are lower-case ASCII letters
// and digits; pairs with other keys are ignored, so a later scheme can be
// sent beside v1. Spaces are not allowed. Errors wrap [ErrBadSignature].
func ParseSignature(header string) (Signature, error) {
	var s Signature
	if header == "" {
		return s, fmt.Errorf("%w: missing", ErrBadSignature)
	}
	if len(header) > maxSignatureHeaderLen {
		return s, fmt.Errorf("%w: header longer than %d bytes", ErrBadSignature, maxSignatureHeaderLen)
	}
	haveT := false
	for pair := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || !validKey(k) {
			return s, fmt.Errorf("%w: malformed pair", ErrBadSignature)
		}
		switch k {
		case "t":
			if haveT {
				return s, fmt.Errorf("%w: more than one timestamp", ErrBadSignature)
			}
			ts, err := parseTimestamp(v)
			if err != nil {
				return s, err
			}
			s.Timestamp, haveT = ts, true
		case "v1":
			if len(s.V1) == maxSignatures {
				return s, fmt.Errorf("%w: more than %d signatures", ErrBadSignature, maxSignatures)
			}
			if len(v) != 2*sha256.Size {
				return s, fmt.Errorf("%w: v1 is not %d hex digits", ErrBadSignature, 2*sha256.Size)
			}
			sum, err := hex.DecodeString(v)
			if err != nil {
				return s, fmt.Errorf("%w: v1 is not hex", ErrBadSignature)
			}
			s.V1 = append(s.V1, sum)
		}
	}
	if !haveT {
		return s, fmt.Errorf("%w: no timestamp", ErrBadSignature)
	}
	if len(s.V1) == 0 {
		return s, fmt.Errorf("%w: no v1 signature", ErrBadSignature)
	}
	return s, nil
}

// validKey reports whether k is a non-empty run of lower-case ASCII letters
// and digits.
func validKey(k string) bool {
	for i := range len(k) {
		if c := k[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return k != ""
}

func parseTimestamp(v string) (int64, error) {
	if v == "" || len(v) > 18 || (len(v) > 1 && v[0] == '0') {
		return 0, fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
	}
	for i := range len(v) {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
		}
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
	}
	return ts, nil
}

// VerifySignature checks a [SignatureHeader] value against body and secret:
// at least one v1 signature must equal HMAC-SHA256(secret, "<t>.<body>"),
// compared in constant time with [hmac.Equal], and t must be within tolerance
// of now (either direction). It returns nil, or an error wrapping
// [ErrBadSignature] or [ErrStaleTimestamp]. Use it to verify requests in a
// handler of your own; [Receiver] calls it.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	_, err := verify(secret, header, body, now, tolerance)
	return err
}

// verify is [VerifySignature], returning the parsed signature.
func verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) (Signature, error) {
	s, err := ParseSignature(header)
	if err != nil {
		return s, err
	}
	want := mac(secret, s.Timestamp, body)
	ok := false
	for _, got := range s.V1 {
		// Compare them all: the time taken must not tell which one matched.
		ok = hmac.Equal(got, want) || ok
	}
	if !ok {
		return s, fmt.Errorf("%w: no v1 signature matches", ErrBadSignature)
	}
	skew := now.Sub(time.Unix(s.Timestamp, 0))
	if skew > tolerance || skew < -tolerance {
		return s, fmt.Errorf("%w: %s off, tolerance %s", ErrStaleTimestamp, skew.Round(time.Second), tolerance)
	}
	return s, nil
}
