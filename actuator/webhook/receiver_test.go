package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// signedAt is a signed request for body, signed at t.
func signedAt(body []byte, key string, t time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set(webhook.SignatureHeader, webhook.Sign(secret, body, t))
	r.Header.Set(webhook.IdempotencyKeyHeader, key)
	return r
}

// serve has rcv answer a copy of r.
func serve(rcv http.Handler, r *http.Request, body []byte) *httptest.ResponseRecorder {
	c := r.Clone(context.Background())
	c.Body = http.NoBody
	if body != nil {
		c = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		c.Header = r.Header.Clone()
	}
	w := httptest.NewRecorder()
	rcv.ServeHTTP(w, c)
	return w
}

// TestKeyKeptUntilSignatureExpires replays a request signed ahead of the
// receiver's clock, within the tolerance, after more than the tolerance has
// passed since it arrived: the signature still verifies, so the key must
// still be known and the replay not applied.
func TestKeyKeptUntilSignatureExpires(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1_750_000_000, 0))
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec, webhook.WithReceiverClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := webhook.Encode(request("d-ahead", 4))
	stamp := clock.Now().Add(webhook.DefaultTolerance - time.Second) // the sender's clock is ahead
	r := signedAt(body, "d-ahead", stamp)

	steps := []struct {
		advance  time.Duration // from the first arrival
		wantCode int
		replayed bool
	}{
		{0, http.StatusOK, false},
		{time.Minute, http.StatusOK, true},
		{webhook.DefaultTolerance + time.Second, http.StatusOK, true},   // the arrival's tolerance has passed
		{2*webhook.DefaultTolerance - time.Second, http.StatusOK, true}, // the signature's last second
		{2 * webhook.DefaultTolerance, http.StatusUnauthorized, false},  // the signature has expired
	}
	start := clock.Now()
	for _, st := range steps {
		clock.Advance(start.Add(st.advance).Sub(clock.Now()))
		w := serve(rcv, r, body)
		if w.Code != st.wantCode || (w.Header().Get("Idempotent-Replayed") == "true") != st.replayed {
			t.Errorf("%v after arrival: %d %q replayed=%q, want %d replayed=%v",
				st.advance, w.Code, w.Body, w.Header().Get("Idempotent-Replayed"), st.wantCode, st.replayed)
		}
	}
	if n := len(rec.Requests()); n != 1 {
		t.Errorf("applied %d times, want 1", n)
	}
}

// TestRetryExtendsKey: a sender's retry carries a later timestamp; the key
// lives until the latest signature seen expires, so a replay of the retry is
// not applied either.
func TestRetryExtendsKey(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1_750_000_000, 0))
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec, webhook.WithReceiverClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := webhook.Encode(request("d-1", 4))
	first := signedAt(body, "d-1", clock.Now())
	if w := serve(rcv, first, body); w.Code != http.StatusOK {
		t.Fatalf("first = %d", w.Code)
	}
	clock.Advance(4 * time.Minute)
	retry := signedAt(body, "d-1", clock.Now())
	if w := serve(rcv, retry, body); w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %d %v, want 200 replayed", w.Code, w.Header())
	}
	clock.Advance(webhook.DefaultTolerance - time.Second) // the first signature has expired, the retry's not
	if w := serve(rcv, first, body); w.Code != http.StatusUnauthorized {
		t.Errorf("first replayed after its expiry = %d, want 401", w.Code)
	}
	if w := serve(rcv, retry, body); w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry replayed = %d %v, want 200 replayed", w.Code, w.Header())
	}
	if n := len(rec.Requests()); n != 1 {
		t.Errorf("applied %d times, want 1", n)
	}
}

// TestSeenKeysFull fills the set of keys: a new key is refused with 503 and
// the seconds until the oldest key expires, no key that could still verify
// is forgotten (a replay of the first is not applied again), and once the
// keys expire new ones are applied.
func TestSeenKeysFull(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1_750_000_000, 0))
	rec := &actuatortest.Recorder{}
	rcv, err := webhook.NewReceiver(secret, rec, webhook.WithReceiverClock(clock), webhook.WithSeenKeys(2))
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	reqs := map[string]*http.Request{}
	for i, key := range []string{"a", "b", "c"} {
		bodies[key], _ = webhook.Encode(request(key, i+1))
		reqs[key] = signedAt(bodies[key], key, clock.Now())
		clock.Advance(10 * time.Second)
	}
	for _, key := range []string{"a", "b"} {
		if w := serve(rcv, reqs[key], bodies[key]); w.Code != http.StatusOK {
			t.Fatalf("%s = %d", key, w.Code)
		}
	}
	w := serve(rcv, reqs["c"], bodies["c"])
	// a was signed 30 s ago: it expires in the tolerance less 30 s, and is
	// forgotten a second later.
	wantWait := strconv.Itoa(int((webhook.DefaultTolerance-30*time.Second)/time.Second) + 1)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != wantWait {
		t.Errorf("c with the set full = %d %q Retry-After %q, want 503 Retry-After %s", w.Code, w.Body, w.Header().Get("Retry-After"), wantWait)
	}
	if w := serve(rcv, reqs["a"], bodies["a"]); w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay of a with the set full = %d %v, want 200 replayed", w.Code, w.Header())
	}
	if n := len(rec.Requests()); n != 2 {
		t.Errorf("applied %d requests, want 2 (a and b once each)", n)
	}

	// Past a's expiry there is room again, for c signed anew.
	clock.Advance(webhook.DefaultTolerance - 30*time.Second + time.Second)
	if w := serve(rcv, signedAt(bodies["c"], "c", clock.Now()), bodies["c"]); w.Code != http.StatusOK {
		t.Errorf("c after a expired = %d %q, want 200", w.Code, w.Body)
	}
	if w := serve(rcv, reqs["a"], bodies["a"]); w.Code != http.StatusUnauthorized {
		t.Errorf("replay of a after its expiry = %d, want 401", w.Code)
	}
}

// TestSenderWaitsWhenFull: a full receiver answers 503 with a Retry-After of the
// time until a key may be forgotten; the Actuator's error carries that wait for the
// loop, and a retry after it is applied.
func TestSenderWaitsWhenFull(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1_750_000_000, 0))
	s := newServer(t, nil, webhook.WithReceiverClock(clock), webhook.WithSeenKeys(1))
	a, err := webhook.New(s.URL, secret, webhook.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.CloseIdleConnections)
	if err := a.Scale(context.Background(), request("d-1", 2)); err != nil {
		t.Fatal(err)
	}
	err = a.Scale(context.Background(), request("d-2", 3))
	wait, ok := actuator.RetryAfterOf(err)
	if err == nil || actuator.IsPermanent(err) || !ok || wait <= webhook.DefaultTolerance {
		t.Fatalf("Scale with the set full = %v (wait %v), want a retryable error asking for more than %v", err, wait, webhook.DefaultTolerance)
	}
	clock.Advance(wait)
	if err := a.Scale(context.Background(), request("d-2", 3)); err != nil {
		t.Fatalf("Scale after the Retry-After = %v", err)
	}
	if n := len(s.rec.Requests()); n != 2 {
		t.Errorf("applied %d, want 2", n)
	}
}

// stallThenFail is an actuator whose first call waits for release and then
// fails transiently; later calls succeed.
type stallThenFail struct {
	started, release chan struct{}
	mu               sync.Mutex
	calls            int
}

func (a *stallThenFail) Scale(context.Context, actuator.Request) error {
	a.mu.Lock()
	a.calls++
	n := a.calls
	a.mu.Unlock()
	if n > 1 {
		return nil
	}
	close(a.started)
	<-a.release
	return errors.New("apiserver unavailable")
}

// TestInProgressRetried: the sender's first attempt times out while the
// receiver still applies it; the retry is answered 409 in progress, whose error
// carries the Retry-After for the loop; that first apply then fails transiently, the
// receiver forgets the key, and the next retry is applied.
func TestInProgressRetried(t *testing.T) {
	act := &stallThenFail{started: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(act.release) }) }
	defer release() // so that a failing test does not leave the handler stalled
	rcv, err := webhook.NewReceiver(secret, act)
	if err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan struct{}) // closed when the receiver has answered the first attempt
	var arrivals atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := arrivals.Add(1)
		rcv.ServeHTTP(w, r)
		if n == 1 {
			close(firstDone)
		}
	}))
	defer srv.Close()
	defer release() // runs before srv.Close

	a, err := webhook.New(srv.URL, secret,
		webhook.WithTimeout(200*time.Millisecond)) // the first attempt gives up while the apply stalls
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseIdleConnections()

	ctx := context.Background()
	if err := a.Scale(ctx, request("d-1", 5)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first attempt = %v, want a timeout", err)
	}
	<-act.started
	err = a.Scale(ctx, request("d-1", 5))
	var se *webhook.StatusError
	if wait, ok := actuator.RetryAfterOf(err); !errors.As(err, &se) || se.Code != http.StatusConflict || !ok || wait < time.Second || actuator.IsPermanent(err) {
		t.Fatalf("retry while applying = %v, want a retryable 409 asking for at least 1s", err)
	}
	release() // the first apply fails; the receiver forgets the key
	<-firstDone
	if err := a.Scale(ctx, request("d-1", 5)); err != nil {
		t.Fatalf("retry after the failed apply = %v, want success", err)
	}
	act.mu.Lock()
	calls := act.calls
	act.mu.Unlock()
	if calls != 2 {
		t.Errorf("actuator called %d times, want 2 (the stalled failure, then the retry)", calls)
	}
}

// TestReceiverReadDeadline sends a request whose body trickles: the receiver
// gives up on it after its read timeout, on a server with no timeouts of
// its own, instead of holding the connection.
func TestReceiverReadDeadline(t *testing.T) {
	rcv, err := webhook.NewReceiver(secret, &actuatortest.Recorder{}, webhook.WithReadTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv) // an http.Server without ReadTimeout
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	// The body never comes; the answer (or the close) must.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the receiver still holds the connection after %v", time.Since(start))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("answered after %v, want about the read timeout of 200ms", el)
	}
}

func TestNewServer(t *testing.T) {
	srv := webhook.NewServer(":8443", http.NotFoundHandler())
	if srv.Addr != ":8443" || srv.ReadHeaderTimeout != webhook.ServerReadHeaderTimeout ||
		srv.ReadTimeout != webhook.ServerReadTimeout || srv.WriteTimeout != webhook.ServerWriteTimeout ||
		srv.IdleTimeout != webhook.ServerIdleTimeout || srv.MaxHeaderBytes != webhook.ServerMaxHeaderBytes {
		t.Errorf("NewServer = %+v, want the documented timeouts", srv)
	}
	for _, d := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout} {
		if d <= 0 {
			t.Errorf("timeout %v is not positive", d)
		}
	}
}
