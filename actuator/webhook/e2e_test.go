package webhook_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// captured is one request as the server saw it.
type captured struct {
	header http.Header
	body   []byte
}

// server runs a Receiver behind middleware that records every request and can
// answer the first len(statuses) of them itself with those statuses.
type server struct {
	*httptest.Server
	rec  *actuatortest.Recorder
	rcv  *webhook.Receiver
	mu   sync.Mutex
	seen []captured
	// statuses are answered, in order, before requests reach the receiver.
	statuses []int
}

func newServer(t *testing.T, statuses []int, ropts ...webhook.ReceiverOption) *server {
	t.Helper()
	s := &server{rec: &actuatortest.Recorder{}, statuses: statuses}
	rcv, err := webhook.NewReceiver(secret, s.rec, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	s.rcv = rcv
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.seen = append(s.seen, captured{r.Header.Clone(), body})
		var status int
		if len(s.statuses) > 0 {
			status, s.statuses = s.statuses[0], s.statuses[1:]
		}
		s.mu.Unlock()
		if status != 0 {
			http.Error(w, "injected", status)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rcv.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]captured(nil), s.seen...)
}

func newActuator(t *testing.T, url string, opts ...webhook.Option) *webhook.Actuator {
	t.Helper()
	a, err := webhook.New(url, secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.CloseIdleConnections)
	return a
}

func TestSuccess(t *testing.T) {
	s := newServer(t, nil)
	a := newActuator(t, s.URL+"/scale")
	req := request("d-1", 5)
	if err := a.Scale(context.Background(), req); err != nil {
		t.Fatalf("Scale = %v", err)
	}
	if diff := cmp.Diff([]actuator.Request{req}, s.rec.Requests()); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	got := s.requests()
	if len(got) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(got))
	}
	h := got[0].header
	if h.Get("Idempotency-Key") != "d-1" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", h)
	}
	if err := webhook.VerifySignature(secret, h.Get("Autoscalelua-Signature"), got[0].body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if h.Get("Authorization") != "" {
		t.Errorf("Authorization sent without a token option: %q", h.Get("Authorization"))
	}
}

// retryLikeTheLoop calls a.Scale up to attempts times, until it succeeds or fails
// permanently, as the scaling loop does (without its waits; the loop's own test of a
// failing webhook decision is in autoscale). It checks that every call made exactly
// one POST, and returns the number of calls and the last error.
func retryLikeTheLoop(t *testing.T, s *server, a *webhook.Actuator, req actuator.Request, attempts int) (int, error) {
	t.Helper()
	var err error
	for n := 1; n <= attempts; n++ {
		before := len(s.requests())
		err = a.Scale(context.Background(), req)
		if got := len(s.requests()) - before; got != 1 {
			t.Fatalf("call %d made %d POSTs, want 1: the actuator does not retry", n, got)
		}
		if err == nil || actuator.IsPermanent(err) {
			return n, err
		}
	}
	return attempts, err
}

func TestStatuses(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		wantCalls int
		wantErr   int // status in the StatusError; 0 for success
		wantPerm  bool
	}{
		{"503 then success", []int{503}, 2, 0, false},
		{"500 502 429 then success", []int{500, 502, 429}, 4, 0, false},
		{"always 503", []int{503, 503, 503, 503, 503}, 5, 503, false},
		{"404 permanent", []int{404}, 1, 404, true},
		{"400 permanent", []int{400}, 1, 400, true},
		{"401 permanent", []int{401}, 1, 401, true},
		{"409 in progress, then success", []int{409}, 2, 0, false},
		{"always 409", []int{409, 409, 409, 409, 409}, 5, 409, false},
		{"422 permanent", []int{422}, 1, 422, true},
		{"503 then 403", []int{503, 403}, 2, 403, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.statuses)
			a := newActuator(t, s.URL)
			calls, err := retryLikeTheLoop(t, s, a, request("d-1", 3), 5)
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == 0 {
				if err != nil {
					t.Fatalf("Scale = %v", err)
				}
				if n := len(s.rec.Requests()); n != 1 {
					t.Errorf("applied %d times, want 1", n)
				}
				// Every attempt carried the same key and body.
				for _, c := range s.requests() {
					if c.header.Get("Idempotency-Key") != "d-1" || !bytes.Equal(c.body, s.requests()[0].body) {
						t.Errorf("attempts differ: %v %s", c.header, c.body)
					}
				}
				return
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.Code != tt.wantErr {
				t.Fatalf("Scale = %v, want StatusError %d", err, tt.wantErr)
			}
			if actuator.IsPermanent(err) != tt.wantPerm {
				t.Errorf("IsPermanent = %v, want %v", !tt.wantPerm, tt.wantPerm)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("status %d %s", tt.wantErr, http.StatusText(tt.wantErr))) {
				t.Errorf("error %q does not name the status", err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	var calls, hang atomic.Int32
	hang.Store(1) // attempts that hang until the client gives up
	stop := make(chan struct{})
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= hang.Load() {
			// Read the body so the server watches the connection: the
			// client's per-attempt timeout closes it and cancels r's context.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		rcv.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(stop)

	a := newActuator(t, srv.URL, webhook.WithTimeout(100*time.Millisecond))
	err = a.Scale(context.Background(), request("d-1", 3))
	if !errors.Is(err, context.DeadlineExceeded) || actuator.IsPermanent(err) {
		t.Fatalf("Scale timing out = %v, want retryable DeadlineExceeded", err)
	}
	if calls.Load() != 1 {
		t.Errorf("calls = %d, want 1: the actuator does not retry", calls.Load())
	}
	if err := a.Scale(context.Background(), request("d-1", 3)); err != nil {
		t.Fatalf("the caller's retry after one timeout = %v", err)
	}
	if calls.Load() != 2 || len(rec.Requests()) != 1 {
		t.Errorf("calls = %d, applied = %d; want 2 and 1", calls.Load(), len(rec.Requests()))
	}
}

func TestNetworkErrorIsRetryableAndRedacted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	a := newActuator(t, "http://user:pw@"+strings.TrimPrefix(url, "http://")+"/scale?key=supersecret")
	err := a.Scale(context.Background(), request("d-1", 3))
	if err == nil || actuator.IsPermanent(err) {
		t.Fatalf("Scale = %v, want a retryable error", err)
	}
	msg := err.Error()
	for _, leak := range []string{"supersecret", "pw", string(secret)} {
		if strings.Contains(msg, leak) {
			t.Errorf("error %q leaks %q", msg, leak)
		}
	}
	if !strings.Contains(msg, "/scale") {
		t.Errorf("error %q should name the endpoint", msg)
	}
}

func TestBadSignature(t *testing.T) {
	s := newServer(t, nil)
	a, err := webhook.New(s.URL, []byte("not the receiver's secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseIdleConnections()
	err = a.Scale(context.Background(), request("d-1", 3))
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !actuator.IsPermanent(err) {
		t.Fatalf("Scale = %v, want permanent 401", err)
	}
	if len(s.rec.Requests()) != 0 {
		t.Error("the actuator was called for a badly signed request")
	}
}

// replay sends a captured request again, straight to the receiver.
func replay(rcv http.Handler, c captured) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.body))
	r.Header = c.header.Clone()
	w := httptest.NewRecorder()
	rcv.ServeHTTP(w, r)
	return w
}

func TestReplayAndDuplicate(t *testing.T) {
	clock := metrics.NewManualClock(time.Now())
	s := newServer(t, nil, webhook.WithReceiverClock(clock))
	a := newActuator(t, s.URL)
	req := request("d-1", 5)

	// The loop retries a decision whose response it did not see: applied once.
	for range 2 {
		if err := a.Scale(context.Background(), req); err != nil {
			t.Fatalf("Scale = %v", err)
		}
	}
	if n := len(s.rec.Requests()); n != 1 {
		t.Fatalf("duplicate decision applied %d times, want 1", n)
	}
	sent := s.requests()
	if sent[1].header.Get("Autoscalelua-Signature") == "" {
		t.Fatal("no signature")
	}

	// An attacker replays a captured request within the tolerance.
	w := replay(s.rcv, sent[0])
	if w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay within tolerance = %d %v, want 200 replayed", w.Code, w.Header())
	}
	if n := len(s.rec.Requests()); n != 1 {
		t.Errorf("replay applied; %d requests", n)
	}

	// ... and later, after the tolerance: rejected as stale.
	clock.Advance(webhook.DefaultTolerance + 2*time.Second)
	w = replay(s.rcv, sent[0])
	if w.Code != http.StatusUnauthorized || strings.TrimSpace(w.Body.String()) != "stale or future timestamp" {
		t.Errorf("stale replay = %d %q, want 401", w.Code, w.Body)
	}
	if n := len(s.rec.Requests()); n != 1 {
		t.Errorf("stale replay applied; %d requests", n)
	}
}

// blocking is an actuator that waits for release.
type blocking struct {
	started chan struct{}
	release chan struct{}
}

func (b *blocking) Scale(ctx context.Context, _ actuator.Request) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func signed(t *testing.T, body []byte, key string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Autoscalelua-Signature", webhook.Sign(secret, body, time.Now()))
	r.Header.Set("Idempotency-Key", key)
	return r
}

func TestInProgressAndKeyReuse(t *testing.T) {
	b := &blocking{started: make(chan struct{}, 1), release: make(chan struct{})}
	rcv, err := webhook.NewReceiver(secret, b)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := webhook.Encode(request("d-1", 5))
	done := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		rcv.ServeHTTP(w, signed(t, body, "d-1"))
		done <- w.Code
	}()
	<-b.started

	w := httptest.NewRecorder()
	rcv.ServeHTTP(w, signed(t, body, "d-1"))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "in progress") || w.Header().Get("Retry-After") != "1" {
		t.Errorf("concurrent duplicate = %d %q %v, want 409 in progress, Retry-After: 1", w.Code, w.Body, w.Header())
	}
	close(b.release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first request = %d, want 200", code)
	}

	other, _ := webhook.Encode(request("d-1", 6))
	w = httptest.NewRecorder()
	rcv.ServeHTTP(w, signed(t, other, "d-1"))
	if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "different body") {
		t.Errorf("key reused = %d %q, want 422", w.Code, w.Body)
	}
}

func TestActuatorFailures(t *testing.T) {
	body, _ := webhook.Encode(request("d-1", 5))
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantText string
	}{
		{"retryable", errors.New("apiserver said: secret-detail"), http.StatusBadGateway, "scale failed"},
		{"permanent", actuator.Permanent(errors.New("secret-detail")), http.StatusUnprocessableEntity, "scale request rejected"},
		{"unknown target", errors.Join(actuator.ErrUnknownTarget, errors.New("secret-detail")), http.StatusUnprocessableEntity, "scale request rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &actuatortest.Recorder{}
			rcv, err := webhook.NewReceiver(secret, rec)
			if err != nil {
				t.Fatal(err)
			}
			rec.SetErr(tt.err)
			w := httptest.NewRecorder()
			rcv.ServeHTTP(w, signed(t, body, "d-1"))
			if w.Code != tt.wantCode || strings.TrimSpace(w.Body.String()) != tt.wantText {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body, tt.wantCode, tt.wantText)
			}
			// A failed key is forgotten: the sender's retry is applied.
			rec.SetErr(nil)
			w = httptest.NewRecorder()
			rcv.ServeHTTP(w, signed(t, body, "d-1"))
			if w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "" {
				t.Errorf("retry after failure = %d %v, want a fresh 200", w.Code, w.Header())
			}
			if n := len(rec.Requests()); n != 2 {
				t.Errorf("actuator called %d times, want 2", n)
			}
		})
	}
}

func TestReceiverRejects(t *testing.T) {
	good, _ := webhook.Encode(request("d-1", 5))
	g := string(good)
	type tc struct {
		name     string
		req      func() *http.Request
		wantCode int
		wantText string
	}
	body := func(b string) func() *http.Request {
		return func() *http.Request { return signed(t, []byte(b), "d-1") }
	}
	tests := []tc{
		{"unknown field", body(strings.Replace(g, `"reason"`, `"shard":2,"reason"`, 1)), 400, "malformed request"},
		{"wrong type", body(strings.Replace(g, `"replicas":5`, `"replicas":"5"`, 1)), 400, "malformed request"},
		{"two JSON values", body(g + g), 400, "malformed request"},
		{"wrong version", body(strings.Replace(g, `"v1"`, `"v9"`, 1)), 400, "malformed request"},
		{"not JSON", body("hello"), 400, "malformed request"},
		{"oversized", body(g + strings.Repeat(" ", webhook.DefaultMaxBodyBytes)), 413, "request body too large"},
		{"oversized without length", func() *http.Request {
			r := signed(t, []byte(g+strings.Repeat(" ", webhook.DefaultMaxBodyBytes)), "d-1")
			r.ContentLength = -1
			return r
		}, 413, "request body too large"},
		{"key mismatch", func() *http.Request { return signed(t, good, "d-2") }, 400, "missing or mismatched idempotency key"},
		{"key missing", func() *http.Request {
			r := signed(t, good, "d-1")
			r.Header.Del("Idempotency-Key")
			return r
		}, 400, "missing or mismatched idempotency key"},
		{"signature missing", func() *http.Request {
			r := signed(t, good, "d-1")
			r.Header.Del("Autoscalelua-Signature")
			return r
		}, 401, "invalid signature"},
		{"two signature headers", func() *http.Request {
			r := signed(t, good, "d-1")
			r.Header.Add("Autoscalelua-Signature", r.Header.Get("Autoscalelua-Signature"))
			return r
		}, 401, "invalid signature"},
		{"body tampered", func() *http.Request {
			r := signed(t, good, "d-1")
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(g, `"replicas":5`, `"replicas":50`, 1)))
			r.ContentLength = -1
			return r
		}, 401, "invalid signature"},
		{"GET", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }, 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &actuatortest.Recorder{}
			rcv, err := webhook.NewReceiver(secret, rec)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			rcv.ServeHTTP(w, tt.req())
			if w.Code != tt.wantCode || strings.TrimSpace(w.Body.String()) != tt.wantText {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body, tt.wantCode, tt.wantText)
			}
			if n := len(rec.Requests()); n != 0 {
				t.Errorf("actuator called %d times for a rejected request", n)
			}
		})
	}
}

func TestSmallBodyLimit(t *testing.T) {
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec, webhook.WithMaxBodyBytes(64))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := webhook.Encode(request("d-1", 5))
	w := httptest.NewRecorder()
	rcv.ServeHTTP(w, signed(t, good, "d-1"))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d, want 413", w.Code)
	}
}

func TestTokenFromEnv(t *testing.T) {
	s := newServer(t, nil)
	t.Setenv("AUTOSCALELUA_TEST_TOKEN", "tok-env-1")
	a := newActuator(t, s.URL, webhook.WithTokenEnv("AUTOSCALELUA_TEST_TOKEN"))
	if err := a.Scale(context.Background(), request("d-1", 5)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTOSCALELUA_TEST_TOKEN", "tok-env-2") // read at call time
	if err := a.Scale(context.Background(), request("d-2", 5)); err != nil {
		t.Fatal(err)
	}
	got := []string{s.requests()[0].header.Get("Authorization"), s.requests()[1].header.Get("Authorization")}
	if diff := cmp.Diff([]string{"Bearer tok-env-1", "Bearer tok-env-2"}, got); diff != "" {
		t.Errorf("Authorization (-want +got):\n%s", diff)
	}

	t.Setenv("AUTOSCALELUA_TEST_TOKEN", "")
	err := a.Scale(context.Background(), request("d-3", 5))
	if err == nil || !actuator.IsPermanent(err) || len(s.requests()) != 2 {
		t.Errorf("Scale with empty token = %v after %d requests, want a permanent error and no request", err, len(s.requests()))
	}
}

func TestTokenFromFile(t *testing.T) {
	s := newServer(t, nil)
	path := filepath.Join(t.TempDir(), "token")
	write := func(tok string) {
		if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tok-file-1\n")
	a := newActuator(t, s.URL, webhook.WithTokenFile(path))
	if err := a.Scale(context.Background(), request("d-1", 5)); err != nil {
		t.Fatal(err)
	}
	write("tok-file-2") // rotation
	if err := a.Scale(context.Background(), request("d-2", 5)); err != nil {
		t.Fatal(err)
	}
	got := []string{s.requests()[0].header.Get("Authorization"), s.requests()[1].header.Get("Authorization")}
	if diff := cmp.Diff([]string{"Bearer tok-file-1", "Bearer tok-file-2"}, got); diff != "" {
		t.Errorf("Authorization (-want +got):\n%s", diff)
	}

	write("bad token\r\nX-Injected: 1")
	err := a.Scale(context.Background(), request("d-3", 5))
	if err == nil || !actuator.IsPermanent(err) || strings.Contains(err.Error(), "bad token") {
		t.Errorf("Scale with a bad token = %v, want a permanent error that does not echo it", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	err = a.Scale(context.Background(), request("d-4", 5))
	if err == nil || actuator.IsPermanent(err) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Scale with a missing token file = %v, want a retryable not-exist error", err)
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

func TestTLS(t *testing.T) {
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(rcv)
	defer srv.Close()

	// Without the server's CA the handshake fails.
	a := newActuator(t, srv.URL)
	if err := a.Scale(context.Background(), request("d-1", 5)); err == nil {
		t.Fatal("Scale trusted an unknown CA")
	}
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	a = newActuator(t, srv.URL, webhook.WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err := a.Scale(context.Background(), request("d-1", 5)); err != nil {
		t.Fatalf("Scale over TLS = %v", err)
	}
	a = newActuator(t, srv.URL, webhook.WithHTTPClient(srv.Client()))
	if err := a.Scale(context.Background(), request("d-2", 5)); err != nil {
		t.Fatalf("Scale with the server's client = %v", err)
	}
	if n := len(rec.Requests()); n != 2 {
		t.Errorf("applied %d, want 2", n)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		secret  []byte
		opts    []webhook.Option
		mention string
	}{
		{"no secret", "https://x", nil, nil, "secret"},
		{"relative url", "/scale", secret, nil, "scheme"},
		{"ftp", "ftp://x/", secret, nil, "scheme"},
		{"no host", "https:///x", secret, nil, "host"},
		{"bad url", "https://x y\x7f", secret, nil, "URL"},
		{"both tokens", "https://x", secret, []webhook.Option{webhook.WithTokenEnv("A"), webhook.WithTokenFile("/f")}, "exclusive"},
		{"tls and client", "https://x", secret, []webhook.Option{webhook.WithTLSConfig(&tls.Config{}), webhook.WithHTTPClient(http.DefaultClient)}, "exclusive"},
		{"zero timeout", "https://x", secret, []webhook.Option{webhook.WithTimeout(0)}, "timeout"},
		{"nil client", "https://x", secret, []webhook.Option{webhook.WithHTTPClient(nil)}, "nil HTTP client"},
		{"empty env name", "https://x", secret, []webhook.Option{webhook.WithTokenEnv("")}, "variable name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.url, tt.secret, tt.opts...)
			if !errors.Is(err, webhook.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("New = %v, want ErrInvalidConfig mentioning %q", err, tt.mention)
			}
		})
	}
	rtests := []struct {
		name   string
		secret []byte
		a      actuator.Actuator
		opts   []webhook.ReceiverOption
	}{
		{"no secret", nil, &actuatortest.Recorder{}, nil},
		{"nil actuator", secret, nil, nil},
		{"zero body", secret, &actuatortest.Recorder{}, []webhook.ReceiverOption{webhook.WithMaxBodyBytes(0)}},
		{"zero tolerance", secret, &actuatortest.Recorder{}, []webhook.ReceiverOption{webhook.WithTolerance(0)}},
		{"zero keys", secret, &actuatortest.Recorder{}, []webhook.ReceiverOption{webhook.WithSeenKeys(0)}},
	}
	for _, tt := range rtests {
		t.Run("receiver "+tt.name, func(t *testing.T) {
			if _, err := webhook.NewReceiver(tt.secret, tt.a, tt.opts...); !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Errorf("NewReceiver = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestInvalidRequestNotSent(t *testing.T) {
	s := newServer(t, nil)
	a := newActuator(t, s.URL)
	err := a.Scale(context.Background(), actuator.Request{Target: actuator.Target{Name: "x"}})
	if !errors.Is(err, actuator.ErrInvalidRequest) || !actuator.IsPermanent(err) {
		t.Errorf("Scale(invalid) = %v", err)
	}
	if len(s.requests()) != 0 {
		t.Error("an invalid request was sent")
	}
}
