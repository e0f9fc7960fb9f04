package llm

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// blockingWriter takes its first write only when released.
type blockingWriter struct {
	started, release chan struct{}
	got              bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	close(w.started)
	<-w.release
	return w.got.Write(p)
}

// A body released while a transport is inside a read keeps its buffer until that read
// ends, and refuses every read after.
func TestBodyReleasedDuringRead(t *testing.T) {
	var pool sync.Pool
	pool.New = func() any { return &bodyBuf{pool: &pool} }
	bb := getBuf(&pool, 16)
	bb.b = append(bb.b, "hello, upstream"...)
	b := newBody(nil, bb)
	bb.unref() // the exchange lets go; the reader still holds it

	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	go func() {
		_, err := b.WriteTo(w)
		done <- err
	}()
	<-w.started
	b.release()
	if n := bb.refs.Load(); n != 1 {
		t.Fatalf("buffer refs while a read is in progress = %d, want 1", n)
	}
	close(w.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.got.String() != "hello, upstream" {
		t.Errorf("the read in progress got %q", w.got.String())
	}
	if n := bb.refs.Load(); n != 0 {
		t.Errorf("buffer refs after the read = %d, want 0", n)
	}
	if _, err := b.Read(make([]byte, 4)); !errors.Is(err, errBodyReleased) {
		t.Errorf("read after release: %v, want errBodyReleased", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close after release: %v", err)
	}
}

// A fallback rewrites the model while the previous attempt's transport may still be
// reading its body: that reader sees only the bytes it started with, or fails; the
// new reader sees the rewritten body. (With -race this also checks that the two
// share no memory that is written.)
func TestSetModelLeavesAnEarlierReaderAlone(t *testing.T) {
	gw, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	const in = `{"model":"first","messages":[{"role":"user","content":"hello there, how are you"}]}`
	var early []byte
	var earlyErr error
	var late []byte
	h := gw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := r.Body
		var wg sync.WaitGroup
		wg.Go(func() { // a transport sending the first attempt, one byte at a time
			p := make([]byte, 1)
			for {
				n, err := first.Read(p)
				early = append(early, p[:n]...)
				if err != nil {
					earlyErr = err
					return
				}
			}
		})
		if err := SetModel(r, "second"); err != nil {
			t.Error(err)
		}
		late, _ = io.ReadAll(r.Body)
		wg.Wait()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(in)))
	if !strings.HasPrefix(in, string(early)) {
		t.Errorf("the earlier reader got %q, not a prefix of the first body", early)
	}
	if len(early) < len(in) && !errors.Is(earlyErr, errBodyReleased) {
		t.Errorf("the earlier reader stopped at %d of %d bytes with %v", len(early), len(in), earlyErr)
	}
	if want := strings.Replace(in, `"first"`, `"second"`, 1); string(late) != want {
		t.Errorf("the new reader got %q, want %q", late, want)
	}
}

// Exchanges and body buffers go back to their pools: a request costs a handful of
// allocations, not a fresh exchange and buffer each time.
func TestGatewayRecyclesExchanges(t *testing.T) {
	gw, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := gw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}))
	body := strings.NewReader(chatBody)
	req := httptest.NewRequest("POST", "/v1/chat/completions", body)
	rec := httptest.NewRecorder()
	serve := func() {
		body.Seek(0, io.SeekStart)
		req.Body = io.NopCloser(body)
		h.ServeHTTP(rec, req)
	}
	serve()
	// The reader is the one allocation the body needs (a reader is never reused, see
	// body); the rest is the estimator's and the windows' first use of a key.
	limit := 4.0
	if raceEnabled {
		limit = 8 // the race detector makes sync.Pool drop a random share of what it is given
	}
	if n := testing.AllocsPerRun(100, serve); n > limit {
		t.Errorf("%.1f allocations per request, want at most %.0f", n, limit)
	}
}
