package middleware

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// responseWriter notes the status, the bytes written and the time of the first flush.
// It implements the optional interfaces a handler may look for (Flusher, Hijacker,
// ReaderFrom, Pusher) by passing them through, and Unwrap for
// [http.ResponseController].
type responseWriter struct {
	http.ResponseWriter
	clock      metrics.Clock
	status     int
	bytes      int64
	firstFlush time.Time
	collect    bool    // a response hook is set: SetValue keeps values
	values     []Value // what SetValue attached, for the response hook
}

var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
	_ http.Pusher   = (*responseWriter)(nil)
)

// reset readies the wrapper for a response to rw (nil: for the pool), keeping its
// values' array, cleared. It sets the fields one by one: a struct literal would zero
// the whole wrapper and then write it again (BenchmarkMiddleware).
func (w *responseWriter) reset(rw http.ResponseWriter, clock metrics.Clock, collect bool) {
	w.ResponseWriter, w.clock, w.collect = rw, clock, collect
	w.status, w.bytes, w.firstFlush = 0, 0, time.Time{}
	if len(w.values) > 0 {
		clear(w.values)
		w.values = w.values[:0]
	}
}

func (w *responseWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *responseWriter) WriteHeader(code int) {
	// Informational responses (1xx) other than 101 are not the final status.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy use the underlying writer's ReadFrom (sendfile on a TCP
// connection) when it has one.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, src)
	}
	w.bytes += n
	return n, err
}

// writerOnly hides ReadFrom, so io.Copy does not call back into ReadFrom.
type writerOnly struct{ io.Writer }

// Flush sends buffered data to the client. The first flush marks the time to first
// byte of a streamed response.
func (w *responseWriter) Flush() {
	if w.firstFlush.IsZero() {
		w.firstFlush = w.clock.Now()
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack takes over the connection when the underlying writer allows it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// Push initiates an HTTP/2 server push when the underlying writer supports it.
func (w *responseWriter) Push(target string, opts *http.PushOptions) error {
	if p, ok := w.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return fmt.Errorf("middleware: push: %w", http.ErrNotSupported)
}

// Unwrap returns the underlying writer, for [http.ResponseController].
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
