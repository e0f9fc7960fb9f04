package middleware

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ErrStoreFull is returned by [DeferStore.Put] when the store is at its bounds; the
// request is then answered as the admission's rejection would have been.
var ErrStoreFull = errors.New("middleware: deferred store full")

// DeferredRequest is a request a [Deferrer] accepted with 202, as stored for replay.
type DeferredRequest struct {
	// ID is the request's id: 32 hex digits, 128 bits from crypto/rand.
	ID string
	// Tenant is the tenant key the admission saw; only a poll with the same tenant
	// reads the result.
	Tenant string
	// Keys are the request's keys (route, tenant, model, priority) after the hook:
	// the replay is admitted and recorded under them, not classified again.
	Keys Keys
	// Handler is which of the deferrer's handlers (in the order [New]'s middleware
	// was applied) deferred the request, and so replays it.
	Handler int
	// Method, URL (the request URI), Host, Pattern (the ServeMux pattern it matched,
	// if any), RemoteAddr, Header and Body rebuild the request.
	Method, URL, Host, Pattern, RemoteAddr string
	Header                                 http.Header
	Body                                   []byte
	// Accepted is when the request was accepted, on the deferrer's clock.
	Accepted time.Time
}

// Size is the bytes the request takes in a store: its body, URL, method and headers.
func (r *DeferredRequest) Size() int64 {
	return int64(len(r.Body)+len(r.URL)+len(r.Method)+len(r.Host)+len(r.Pattern)) + headerSize(r.Header)
}

// DeferredResult is the response a replayed request got.
type DeferredResult struct {
	Status int
	Header http.Header
	Body   []byte
	// Done is when the replay ended, on the deferrer's clock.
	Done time.Time
}

// Size is the bytes the result takes in a store.
func (r *DeferredResult) Size() int64 { return int64(len(r.Body)) + headerSize(r.Header) }

func headerSize(h http.Header) int64 {
	var n int64
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

// DeferredState is where a deferred request is: waiting for capacity, being
// replayed, or answered.
type DeferredState int

// The states of a deferred request.
const (
	DeferredPending DeferredState = iota
	DeferredRunning
	DeferredDone
)

// DeferredEntry is what a store holds for an id.
type DeferredEntry struct {
	State  DeferredState
	Tenant string
	// Result and Expires are set once State is DeferredDone.
	Result  DeferredResult
	Expires time.Time
}

// DeferStore holds a [Deferrer]'s requests and results. [MemoryStore] is the default;
// a durable store (Redis, a database) plugs in here, and with it the delivery
// guarantee changes: see [Deferrer]. Every method must be safe for concurrent use.
//
// The interface has five methods because a deferred request has a life cycle: it is
// put, claimed by a worker, completed, read by polls, and swept once its result
// expires.
type DeferStore interface {
	// Put stores a new pending request; [ErrStoreFull] when the store is at its
	// bounds.
	Put(ctx context.Context, req DeferredRequest) error
	// Claim takes the oldest pending request and marks it running; ok is false
	// when none is pending.
	Claim(ctx context.Context) (req DeferredRequest, ok bool, err error)
	// Complete records the result of a running request, kept until expires.
	Complete(ctx context.Context, id string, res DeferredResult, expires time.Time) error
	// Get returns the entry for id; ok is false for an unknown id. It may return an
	// entry whose result has expired but was not swept yet; the deferrer checks.
	Get(ctx context.Context, id string) (e DeferredEntry, ok bool, err error)
	// Sweep removes the results that expired at or before now and returns how many.
	Sweep(ctx context.Context, now time.Time) (n int, err error)
}

// Defaults of [MemoryStore].
const (
	DefaultDeferMaxRequests       = 10_000
	DefaultDeferMaxBytes    int64 = 64 << 20
)

// MemoryStore is the default [DeferStore]: a map bounded by count and bytes, with the
// pending requests in arrival order and the results in order of expiry. A request
// counts against both bounds from Put until its result is swept; results count too,
// so a store full of unread results refuses new requests until they expire. Put
// checks the bounds; Complete never fails for them, so the bytes may pass MaxBytes by
// at most the results of the requests running at once.
//
// A MemoryStore is safe for concurrent use. What it holds is lost when the process
// ends.
type MemoryStore struct {
	maxCount int
	maxBytes int64

	mu      sync.Mutex
	entries map[string]*memEntry
	pending []*memEntry // FIFO from head
	head    int
	expiry  expiryHeap
	bytes   int64
}

type memEntry struct {
	req   DeferredRequest
	state DeferredState
	res   DeferredResult
	exp   time.Time
	size  int64
	index int // in the expiry heap
}

var _ DeferStore = (*MemoryStore)(nil)

// NewMemoryStore returns a store of at most maxRequests requests and maxBytes bytes
// (0 for [DefaultDeferMaxRequests] and [DefaultDeferMaxBytes]). Negative bounds are
// errors wrapping [ErrInvalidConfig].
func NewMemoryStore(maxRequests int, maxBytes int64) (*MemoryStore, error) {
	var errs []error
	if maxRequests < 0 {
		errs = append(errs, configError("deferred store: max requests %d is negative", maxRequests))
	}
	if maxBytes < 0 {
		errs = append(errs, configError("deferred store: max bytes %d is negative", maxBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if maxRequests == 0 {
		maxRequests = DefaultDeferMaxRequests
	}
	if maxBytes == 0 {
		maxBytes = DefaultDeferMaxBytes
	}
	return &MemoryStore{maxCount: maxRequests, maxBytes: maxBytes, entries: make(map[string]*memEntry)}, nil
}

// Put implements [DeferStore].
func (s *MemoryStore) Put(_ context.Context, req DeferredRequest) error {
	size := req.Size()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.entries[req.ID]; dup {
		return fmt.Errorf("middleware: deferred store: duplicate id")
	}
	if len(s.entries) >= s.maxCount || s.bytes+size > s.maxBytes {
		return ErrStoreFull
	}
	e := &memEntry{req: req, size: size, index: -1}
	s.entries[req.ID] = e
	s.pending = append(s.pending, e)
	s.bytes += size
	return nil
}

// Claim implements [DeferStore].
func (s *MemoryStore) Claim(context.Context) (DeferredRequest, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == len(s.pending) {
		return DeferredRequest{}, false, nil
	}
	e := s.pending[s.head]
	s.pending[s.head] = nil
	s.head++
	if s.head == len(s.pending) {
		s.pending, s.head = s.pending[:0], 0
	} else if s.head > 1024 && s.head > len(s.pending)/2 {
		n := copy(s.pending, s.pending[s.head:])
		clear(s.pending[n:])
		s.pending, s.head = s.pending[:n], 0
	}
	e.state = DeferredRunning
	req := e.req
	// The body is the replay's now; the store keeps only what polls need.
	e.req.Body, e.req.Header = nil, nil
	return req, true, nil
}

// Complete implements [DeferStore].
func (s *MemoryStore) Complete(_ context.Context, id string, res DeferredResult, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok || e.state != DeferredRunning {
		return fmt.Errorf("middleware: deferred store: no running request with that id")
	}
	e.state, e.res, e.exp = DeferredDone, res, expires
	rs := res.Size()
	// The request's body and headers were handed to the replay; its result takes
	// their place.
	s.bytes += rs - e.size + e.req.Size()
	e.size = e.req.Size() + rs
	heap.Push(&s.expiry, e)
	return nil
}

// Get implements [DeferStore].
func (s *MemoryStore) Get(_ context.Context, id string) (DeferredEntry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return DeferredEntry{}, false, nil
	}
	return DeferredEntry{State: e.state, Tenant: e.req.Tenant, Result: e.res, Expires: e.exp}, true, nil
}

// Sweep implements [DeferStore].
func (s *MemoryStore) Sweep(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for len(s.expiry) > 0 && !s.expiry[0].exp.After(now) {
		e := heap.Pop(&s.expiry).(*memEntry)
		delete(s.entries, e.req.ID)
		s.bytes -= e.size
		n++
	}
	return n, nil
}

// Len returns the requests and results held, and their bytes.
func (s *MemoryStore) Len() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries), s.bytes
}

// expiryHeap orders answered entries by expiry, earliest first.
type expiryHeap []*memEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*memEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
