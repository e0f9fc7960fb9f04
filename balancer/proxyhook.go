package balancer

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// A ProxyHook runs once for every request a [Proxy] served, after its response (the log
// phase; luabind's Runtime.ProxyHook runs a script's on_response here). It runs
// on the request's goroutine, must be safe for concurrent use and must not block; res is
// valid only during the call.
type ProxyHook func(r *http.Request, res ProxyResponse)

// ProxyResponse is what a [ProxyHook] sees of a proxied request.
type ProxyResponse struct {
	// Backend is the ID of the backend that answered, or of the last one tried; "" when
	// none was ready.
	Backend string
	// Status is the status sent to the client: the backend's, or the proxy's own
	// (502, 503, 504) when it answered instead.
	Status int
	// Latency is the time from the request's arrival at the proxy to the end of its
	// response.
	Latency time.Duration
	// Bytes counts the response body's bytes sent to the client.
	Bytes int64
	// Header is the response's header as sent (the backend's, which is where a host
	// finds usage figures to attach as values).
	Header http.Header
	// Err is the last attempt's transport error, or the copy's when the response was
	// cut off; nil when the backend answered and the body went through.
	Err error
}

// WithProxyHook sets a hook run after every request the proxy serves. The default is
// none; without one the proxy does not wrap the response writer.
func WithProxyHook(h ProxyHook) ProxyOption {
	return func(p *Proxy) error {
		if h == nil {
			return fmt.Errorf("%w: nil proxy hook", ErrInvalidConfig)
		}
		p.hook = h
		return nil
	}
}

// serveHooked serves r through a writer that counts the status and bytes sent, then
// calls the hook, also when the reverse proxy aborts the response with a panic.
func (p *Proxy) serveHooked(w http.ResponseWriter, r *http.Request, st *proxyState) {
	cw := countingWriters.Get().(*countingWriter)
	*cw = countingWriter{ResponseWriter: w}
	clock := p.pool.clock
	start := clock.Now()
	returned := false
	defer func() {
		res := ProxyResponse{Status: cw.status, Latency: clock.Now().Sub(start), Bytes: cw.bytes, Header: w.Header(), Err: st.err}
		if res.Status == 0 {
			res.Status = http.StatusOK
		}
		if st.backend != nil {
			res.Backend = st.backend.id
		}
		if !returned && res.Err == nil {
			res.Err = errCopyAborted
		}
		p.hook(r, res)
		if returned {
			*cw = countingWriter{}
			countingWriters.Put(cw)
		}
	}()
	p.serve(cw, r, st)
	returned = true
}

var countingWriters = sync.Pool{New: func() any { return new(countingWriter) }}

// countingWriter notes the status and the body bytes written. The reverse proxy
// reaches the underlying writer's Flush and Hijack through Unwrap (it uses
// [http.ResponseController]).
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap returns the underlying writer, for [http.ResponseController].
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
