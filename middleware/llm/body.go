package llm

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// The request body the gateway hands to the handler behind it is a body: a reader
// over a bodyBuf, the bytes the gateway read and parsed. Buffers are pooled; readers
// are not.
//
// A buffer is never written once filled, so any number of readers may share it, and
// it goes back to the pool when the exchange and every reader have let go of it. The
// hard part is a reader's last user: an http.Transport reads a request body in its own
// goroutine, which may still be inside Read when the handler returns (and, behind a
// fallback, when the next attempt starts). So a reader is released by the handler, or
// closed by whoever consumes it, through a small state machine: a Read in progress
// when the reader is released finishes on the buffer it started on and lets go of it
// itself; a Read after release fails, as httputil.ReverseProxy's own body wrapper does.
// A reader is never reused, so a late Read can only ever see its own request's bytes.

// bodyBuf is a pooled body buffer with a count of its holders.
type bodyBuf struct {
	b    []byte
	refs atomic.Int32
	pool *sync.Pool
}

// maxPooledBody is the largest buffer kept in the pool; larger ones are left to the
// garbage collector so one huge prompt does not pin its memory.
const maxPooledBody = 1 << 20

func getBuf(pool *sync.Pool, size int) *bodyBuf {
	bb := pool.Get().(*bodyBuf)
	if cap(bb.b) < size {
		bb.b = make([]byte, 0, size)
	}
	bb.b = bb.b[:0]
	bb.refs.Store(1)
	return bb
}

func (bb *bodyBuf) hold() { bb.refs.Add(1) }

func (bb *bodyBuf) unref() {
	if bb.refs.Add(-1) != 0 {
		return
	}
	if cap(bb.b) <= maxPooledBody {
		bb.pool.Put(bb)
	}
}

// A body's states. A fresh body has not been read; open has been, with no read now.
const (
	bodyFresh int32 = iota
	bodyOpen
	bodyReading   // a Read or WriteTo is in progress
	bodyReleasing // released during a read, which lets go of the buffer when it ends
	bodyReleased
)

var errBodyReleased = errors.New("llm: request body read after its handler returned or the body was closed")

// body is one reader of a request's body: the handler's r.Body, byte for byte what
// the client sent (or that with the model rewritten, see [SetModel]).
type body struct {
	x     *exchange // the exchange it belongs to, for FromRequest
	buf   *bodyBuf
	off   int
	state atomic.Int32
}

var (
	_ io.ReadCloser = (*body)(nil)
	_ io.WriterTo   = (*body)(nil)
)

func newBody(x *exchange, bb *bodyBuf) *body {
	bb.hold()
	return &body{x: x, buf: bb}
}

func (b *body) begin() bool {
	return b.state.CompareAndSwap(bodyOpen, bodyReading) || b.state.CompareAndSwap(bodyFresh, bodyReading)
}

func (b *body) end() {
	if !b.state.CompareAndSwap(bodyReading, bodyOpen) {
		b.state.Store(bodyReleased) // released while reading
		b.buf.unref()
	}
}

// Read gives the body back.
func (b *body) Read(p []byte) (int, error) {
	if !b.begin() {
		return 0, errBodyReleased
	}
	defer b.end()
	rest := b.buf.b[b.off:]
	if len(rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, rest)
	b.off += n
	return n, nil
}

// WriteTo writes the rest of the body to w in one call.
func (b *body) WriteTo(w io.Writer) (int64, error) {
	if !b.begin() {
		return 0, errBodyReleased
	}
	defer b.end()
	n, err := w.Write(b.buf.b[b.off:])
	b.off += n
	return int64(n), err
}

// Close ends the body: later reads fail.
func (b *body) Close() error {
	b.release()
	return nil
}

// release ends the body and lets go of its buffer, at once or, when a read is in
// progress, as that read ends.
func (b *body) release() {
	for {
		switch s := b.state.Load(); s {
		case bodyFresh, bodyOpen:
			if b.state.CompareAndSwap(s, bodyReleased) {
				b.buf.unref()
				return
			}
		case bodyReading:
			if b.state.CompareAndSwap(s, bodyReleasing) {
				return
			}
		default:
			return
		}
	}
}

// fresh reports whether nothing has read the body yet.
func (b *body) fresh() bool { return b.state.Load() == bodyFresh }
