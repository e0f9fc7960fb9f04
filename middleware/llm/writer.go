package llm

import (
	"net/http"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// respWriter passes the response through as it is written, noting its status, the
// time of its first byte and of its first content (the first token), and feeding its
// bytes to the usage scanner. It flushes as its caller flushes and holds nothing back,
// so a stream's events reach the client as the upstream sends them.
type respWriter struct {
	http.ResponseWriter
	x          *exchange
	status     int
	first      time.Time
	firstToken time.Time
	scan       usageScanner
	limit      int
	done       bool
	u          Usage
}

var (
	_ http.Flusher      = (*respWriter)(nil)
	_ middleware.Valuer = (*respWriter)(nil)
)

func (w *respWriter) begin(rw http.ResponseWriter, limit int) {
	w.ResponseWriter = rw
	w.limit = limit
}

func (w *respWriter) reset() {
	scan := w.scan
	scan.reset(scanNone, 0)
	*w = respWriter{scan: scan}
}

func (w *respWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// WriteHeader notes the status and chooses how the body is read for usage: a success
// with a JSON or event-stream content type and no content encoding is read, anything
// else is not.
func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		if code < 300 {
			// Canonical keys read straight from the map: Get would canonicalize them
			// again on every response.
			h := w.Header()
			ct, enc := first(h["Content-Type"]), first(h["Content-Encoding"])
			switch {
			case enc != "" && enc != "identity":
			case strings.HasPrefix(ct, "text/event-stream"):
				w.scan.reset(scanSSE, w.limit)
			case strings.Contains(ct, "json"):
				w.scan.reset(scanJSON, w.limit)
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Write passes p on, then reads it for usage.
func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	if n > 0 {
		if w.first.IsZero() {
			w.first = w.x.g.opts.clock.Now()
			if w.scan.mode != scanSSE {
				w.firstToken = w.first
			}
		}
		if w.scan.write(p[:n]) && w.firstToken.IsZero() {
			w.firstToken = w.x.g.opts.clock.Now()
		}
	}
	return n, err
}

// Flush sends what was written to the client.
func (w *respWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for [http.ResponseController].
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// usage finishes reading the response (once) and returns what it reported.
func (w *respWriter) usage() Usage {
	if !w.done {
		w.done = true
		w.u = w.scan.finish()
	}
	return w.u
}

// ObservationValue is the tokens the request used, input and output (see
// [middleware.Valuer]): a middleware behind the gateway records them as its windows'
// Value.
func (w *respWriter) ObservationValue() float64 {
	ok := w.statusCode() >= 200 && w.statusCode() < 300
	in, out := w.x.used(w.usage(), ok)
	return float64(in + out)
}
