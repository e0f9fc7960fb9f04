package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// ErrInvalidConfig reports a bad argument or option to [New] or
// [NewReceiver].
var ErrInvalidConfig = errors.New("webhook: invalid configuration")

// DefaultTimeout is the default time limit of one HTTP attempt.
const DefaultTimeout = 10 * time.Second

// maxTokenFileSize bounds the bearer token file.
const maxTokenFileSize = 64 << 10

// StatusError reports a response whose status code is not 2xx. Statuses
// 409, 429 and 5xx are retried; any other is returned marked
// [actuator.Permanent]. (A [Receiver] answers 409 while it still applies
// an earlier attempt with the same idempotency key, as the draft IETF
// Idempotency-Key header specifies: the outcome is not known yet, and that
// apply may still fail and be forgotten.) Use [errors.As] to read the code.
type StatusError struct {
	// URL is the endpoint, without user information or query.
	URL string
	// Code is the HTTP status code.
	Code int
	// RetryAfter is the wait the server asked for with a Retry-After header
	// (delay-seconds or an HTTP-date, RFC 9110 section 10.2.3) on a 409, 429
	// or 503 response. Zero when there was none, it did not parse, it lay in
	// the past, or the status was another one.
	RetryAfter time.Duration
}

// Error names the endpoint and status; it never includes the response body.
func (e *StatusError) Error() string {
	return fmt.Sprintf("webhook: POST %s: unexpected status %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

// Retryable reports whether the status is worth retrying: 409 (a request
// with the same idempotency key in progress), 429 and 5xx.
func (e *StatusError) Retryable() bool {
	return e.Code == http.StatusConflict || e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// Actuator is an [actuator.Actuator] that POSTs each request as a signed JSON
// body (see [Encode] and [Sign]) to one URL. Each attempt sends:
//
//	Content-Type: application/json
//	Idempotency-Key: <decision id>
//	Autoscalelua-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
//	Authorization: Bearer <token>      (only with WithTokenEnv or WithTokenFile)
//
// Each Scale call makes one attempt: the scaling loop is the one retrier (see
// the actuator package). A 2xx response is success. Network errors, timeouts,
// 409 (the receiver is still applying an earlier attempt), 429 and 5xx are
// retryable errors; other statuses fail with a permanent [*StatusError]. A 409,
// 429 or 503 with a Retry-After header returns an error carrying that wait
// ([actuator.RetryAfter]), which the loop honours, capped by its maximum delay.
// Every attempt for a decision sends the same body and idempotency key with a
// fresh signature timestamp, so the receiver applies the decision once however
// often the loop retries. Redirects are not followed (unless you pass your own
// client with [WithHTTPClient]).
//
// Errors and log lines never contain the secret, the token, the URL's user
// information or query, or the response body. An Actuator is safe for
// concurrent use.
type Actuator struct {
	url       string // as given, used for requests
	redacted  string // scheme://host/path, for errors
	secret    []byte
	client    *http.Client
	tokenEnv  string
	tokenFile string
	timeout   time.Duration
	clock     metrics.Clock
	logger    *slog.Logger
}

var _ actuator.Actuator = (*Actuator)(nil)

type clientConfig struct {
	tokenEnv, tokenFile string
	tls                 *tls.Config
	client              *http.Client
	timeout             time.Duration
	clock               metrics.Clock
	logger              *slog.Logger
	errs                []error
}

// Option configures an [Actuator].
type Option func(*clientConfig)

// WithTokenEnv sends "Authorization: Bearer <token>" with the token read from
// the environment variable name at each attempt. An empty variable fails the
// call permanently. Not with [WithTokenFile].
func WithTokenEnv(name string) Option {
	return func(c *clientConfig) {
		if name == "" {
			c.errs = append(c.errs, errors.New("token environment variable name is empty"))
		}
		c.tokenEnv = name
	}
}

// WithTokenFile sends "Authorization: Bearer <token>" with the token read
// from the file at path at each attempt (surrounding white space trimmed), so
// a rotated token (for example a projected Kubernetes secret) is picked up
// without a restart. A missing or empty file fails the attempt, and the
// attempt is retried. Not with [WithTokenEnv].
func WithTokenFile(path string) Option {
	return func(c *clientConfig) {
		if path == "" {
			c.errs = append(c.errs, errors.New("token file path is empty"))
		}
		c.tokenFile = path
	}
}

// WithTLSConfig sets the TLS configuration (root CAs, client certificates)
// of the default HTTP client; it is cloned. Not with [WithHTTPClient].
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *clientConfig) {
		if cfg == nil {
			c.errs = append(c.errs, errors.New("nil TLS config"))
			return
		}
		c.tls = cfg.Clone()
	}
}

// WithHTTPClient sets the HTTP client, for full control of transport, proxy
// and redirects. Its Timeout, if any, adds to the per-attempt timeout. Not
// with [WithTLSConfig].
func WithHTTPClient(hc *http.Client) Option {
	return func(c *clientConfig) {
		if hc == nil {
			c.errs = append(c.errs, errors.New("nil HTTP client"))
			return
		}
		c.client = hc
	}
}

// WithTimeout sets the time limit of one attempt, response included. Default
// [DefaultTimeout]; it must be positive.
func WithTimeout(d time.Duration) Option {
	return func(c *clientConfig) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("timeout %s is not positive", d))
			return
		}
		c.timeout = d
	}
}

// WithClock sets the clock used for signature timestamps and to turn a
// Retry-After date into a wait. Default [metrics.NewSystemClock].
func WithClock(clk metrics.Clock) Option {
	return func(c *clientConfig) {
		if clk == nil {
			c.errs = append(c.errs, errors.New("nil clock"))
			return
		}
		c.clock = clk
	}
}

// WithLogger logs failed attempts at Debug level (the error returned to the
// caller is the record of a failed call). Default [slog.Default], the
// default logger everywhere in this module.
func WithLogger(l *slog.Logger) Option {
	return func(c *clientConfig) {
		if l == nil {
			c.errs = append(c.errs, errors.New("nil logger"))
			return
		}
		c.logger = l
	}
}

// New returns an [Actuator] that POSTs to endpoint, an absolute http or https
// URL, signing with secret (which must not be empty; it is copied). Use https
// outside of tests: the token travels in a header. Bad arguments return an
// error wrapping [ErrInvalidConfig].
func New(endpoint string, secret []byte, opts ...Option) (*Actuator, error) {
	cfg := clientConfig{timeout: DefaultTimeout, clock: metrics.NewSystemClock(), logger: slog.Default()}
	for _, o := range opts {
		if o == nil {
			cfg.errs = append(cfg.errs, errors.New("nil option"))
			continue
		}
		o(&cfg)
	}
	errs := cfg.errs
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		errs = append(errs, errors.New("endpoint is not a URL"))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, errors.New("endpoint scheme must be http or https"))
	case u.Host == "":
		errs = append(errs, errors.New("endpoint has no host"))
	}
	if len(secret) == 0 {
		errs = append(errs, errors.New("signing secret is empty"))
	}
	if cfg.tokenEnv != "" && cfg.tokenFile != "" {
		errs = append(errs, errors.New("WithTokenEnv and WithTokenFile are exclusive"))
	}
	if cfg.tls != nil && cfg.client != nil {
		errs = append(errs, errors.New("WithTLSConfig and WithHTTPClient are exclusive"))
	}
	a := &Actuator{
		url:       endpoint,
		secret:    bytes.Clone(secret),
		tokenEnv:  cfg.tokenEnv,
		tokenFile: cfg.tokenFile,
		timeout:   cfg.timeout,
		clock:     cfg.clock,
		logger:    cfg.logger,
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	a.redacted = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	hc := cfg.client
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.tls != nil {
			tr.TLSClientConfig = cfg.tls
		}
		hc = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	a.client = hc
	return a, nil
}

// Scale validates and encodes req, then POSTs it once, as described on
// [Actuator]. An invalid request fails permanently with an error wrapping
// [actuator.ErrInvalidRequest], and is not sent.
func (a *Actuator) Scale(ctx context.Context, req actuator.Request) error {
	body, err := Encode(req)
	if err != nil {
		return actuator.Permanent(err)
	}
	if err = a.post(ctx, req.DecisionID, body); err != nil {
		a.logger.LogAttrs(ctx, slog.LevelDebug, "webhook: attempt failed",
			slog.String("decision_id", req.DecisionID), slog.String("error", err.Error()))
	}
	return err
}

// post makes one attempt.
func (a *Actuator) post(ctx context.Context, key string, body []byte) error {
	token, err := a.token()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return actuator.Permanent(fmt.Errorf("webhook: POST %s: cannot build request", a.redacted))
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "autoscalelua-webhook/1")
	hreq.Header.Set(IdempotencyKeyHeader, key)
	hreq.Header.Set(SignatureHeader, Sign(a.secret, body, a.clock.Now()))
	if token != "" {
		hreq.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.client.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the full URL
		}
		return fmt.Errorf("webhook: POST %s: %w", a.redacted, err)
	}
	// Drain a little so the connection can be reused; never report the body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	serr := &StatusError{URL: a.redacted, Code: resp.StatusCode}
	if serr.Code == http.StatusConflict || serr.Code == http.StatusTooManyRequests || serr.Code == http.StatusServiceUnavailable {
		serr.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), a.clock.Now())
	}
	if serr.Retryable() {
		return actuator.RetryAfter(serr, serr.RetryAfter)
	}
	return actuator.Permanent(serr)
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 section 10.2.3), into a wait from now. It returns 0 for an empty
// or malformed value or a date not after now; a number of seconds too large
// for a time.Duration gives the largest one (the loop caps it).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64 // only digits, so the error is a range error
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return max(t.Sub(now), 0)
}

// CloseIdleConnections closes idle keep-alive connections of the HTTP
// client, for example when the actuator is no longer used.
func (a *Actuator) CloseIdleConnections() { a.client.CloseIdleConnections() }

// token reads the bearer token, if one is configured.
func (a *Actuator) token() (string, error) {
	var tok string
	switch {
	case a.tokenEnv != "":
		tok = strings.TrimSpace(os.Getenv(a.tokenEnv))
		if tok == "" {
			return "", actuator.Permanent(fmt.Errorf("webhook: token environment variable %s is empty", a.tokenEnv))
		}
	case a.tokenFile != "":
		f, err := os.Open(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("webhook: read token file: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
		_ = f.Close()
		if err != nil {
			return "", fmt.Errorf("webhook: read token file: %w", err)
		}
		if len(b) > maxTokenFileSize {
			return "", actuator.Permanent(fmt.Errorf("webhook: token file %s is larger than %d bytes", a.tokenFile, maxTokenFileSize))
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("webhook: token file %s is empty", a.tokenFile)
		}
	default:
		return "", nil
	}
	for i := range len(tok) {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return "", actuator.Permanent(errors.New("webhook: token contains a character not allowed in a header"))
		}
	}
	return tok, nil
}
