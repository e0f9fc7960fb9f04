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

// TestSenderWaitsWhenFull: the Actuator retries a 503 from a full receiver
// no sooner than its Retry-After.
func TestSenderWaitsWhenFull(t *testing.T) {
	// Time passes while the sender waits.
	clock := &instantClock{ManualClock: metrics.NewManualClock(time.Unix(1_750_000_000, 0)), advance: true}
	s := newServer(t, nil, webhook.WithReceiverClock(clock), webhook.WithSeenKeys(1))
	a, err := webhook.New(s.URL, secret, webhook.WithClock(clock),
		webhook.WithRetry(actuator.WithBackoff(time.Millisecond, 10*time.Minute), actuator.WithClock(clock)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.CloseIdleConnections)
	if err := a.Scale(context.Background(), request("d-1", 2)); err != nil {
		t.Fatal(err)
	}
	if err := a.Scale(context.Background(), request("d-2", 3)); err != nil {
		t.Fatalf("Scale with the set full = %v, want success after a wait", err)
	}
	if waits := clock.Waits(); len(waits) != 1 || waits[0] <= webhook.DefaultTolerance {
		t.Errorf("waits = %v, want one of more than %v", waits, webhook.DefaultTolerance)
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
// receiver still applies it; the retry is answered 409 in progress with
// Retry-After, which the sender honours and retries; that first apply then
// fails transiently, the receiver forgets the key, and the sender's next
// retry is applied. Before, the 409 ended the sender's call as a permanent
// failure and the decision was never applied.
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

	clock := &instantClock{ManualClock: metrics.NewManualClock(time.Unix(0, 0)), onWait: func(n int) {
		if n == 2 { // after the 409: let the first apply fail, and wait for the receiver to forget it
			release()
			<-firstDone
		}
	}}
	a, err := webhook.New(srv.URL, secret,
		webhook.WithTimeout(200*time.Millisecond), // the first attempt gives up while the apply stalls
		webhook.WithRetry(actuator.WithAttempts(4), actuator.WithClock(clock)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseIdleConnections()

	errc := make(chan error, 1)
	go func() { errc <- a.Scale(context.Background(), request("d-1", 5)) }()
	if err := <-errc; err != nil {
		t.Fatalf("Scale = %v, want success on the retry after the failed apply", err)
	}
	<-act.started
	act.mu.Lock()
	calls := act.calls
	act.mu.Unlock()
	if calls != 2 {
		t.Errorf("actuator called %d times, want 2 (the stalled failure, then the retry)", calls)
	}
	if waits := clock.Waits(); len(waits) != 2 || waits[1] < time.Second {
		t.Errorf("waits = %v, want 2, the second at least the 409's Retry-After of 1s", waits)
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
