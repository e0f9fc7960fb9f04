package balancer

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is an [http.Handler] around an [httputil.ReverseProxy] that picks a backend
// from a [Pool] for every request, proxies to it, and records the outcome with
// [Result.Done] (latency to the end of the response body, status or transport error),
// which feeds the backend's window, peak-EWMA and failure counters.
//
// The reverse proxy uses Rewrite (not Director): the outbound URL is the backend's URL
// joined with the request's path, X-Forwarded-For, -Host and -Proto are set (see
// [WithTrustForwarded]), and Host is the backend's unless [WithPreserveHost].
//
// Responses stream: server-sent events (text/event-stream) and responses without a
// Content-Length (chunked, such as LLM token streams) are flushed after every write —
// the reverse proxy uses FlushInterval -1 for them whatever its setting. Responses
// with a Content-Length are copied with the proxy's FlushInterval, 0 by default: a
// FlushInterval of -1 for those would cost a timer, a goroutine and an extra write per
// response (about 10% of the proxy's throughput, see internal/proxyload) and deliver
// nothing sooner. [WithFlushInterval] changes it.
//
// A [ProxyHook] ([WithProxyHook]) runs after every request with the backend, the status
// and bytes sent and the latency: the log phase, where luabind runs a script's
// on_response.
//
// # Errors
//
// No error text reaches the client, only a status and its standard text:
//   - no backend ready ([ErrNoBackend]), for the request's model when it has one: 503
//     with Retry-After;
//   - a timeout (the transport's or a context deadline): 504;
//   - any other transport failure: 502.
//
// Responses from backends, 5xx included, pass through unchanged, unless the request's
// model has a fallback chain ([WithFallback]).
//
// # Retries
//
// A request whose connection to the backend could not be made (a dial error: refused,
// unreachable, dial timeout — the request never left) is retried on another backend
// when its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and it has no
// body, at most [WithRetries] times (default 2). Retries also draw on a budget, as
// Finagle's RetryBudget: every request deposits 0.2 tokens, a retry costs one, and the
// balance is capped at 100 tokens and starts full, so retries add at most 20% to the
// load on backends in steady state (plus a burst of 100) however many backends fail.
// Failures after the request was sent are never retried.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	pool        *Pool
	rp          *httputil.ReverseProxy
	key         func(*http.Request) string
	retries     int
	retryAfter  string
	trust       bool
	preserve    bool
	budget      atomic.Int64 // milli-tokens
	budgetCap   int64
	transport   http.RoundTripper
	flush       time.Duration
	errorLog    *log.Logger
	bufferPool  httputil.BufferPool
	retriesDone atomic.Uint64
	model       func(*http.Request) string
	setModel    func(*http.Request, string) error
	prompt      func(*http.Request) string
	routes      map[string]*Pool
	fb          *fallbacks
	hook        ProxyHook
}

// ProxyOption configures a [Proxy].
type ProxyOption func(*Proxy) error

// WithKey sets how the hashing key ([Request.Key]) is read from a request: a tenant
// header, a session cookie. The default is no key.
func WithKey(f func(*http.Request) string) ProxyOption {
	return func(p *Proxy) error {
		if f == nil {
			return fmt.Errorf("%w: nil key function", ErrInvalidConfig)
		}
		p.key = f
		return nil
	}
}

// HeaderKey returns a key function that reads a header, for [WithKey].
func HeaderKey(name string) func(*http.Request) string {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) string {
		if v := r.Header[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// CookieKey returns a key function that reads a cookie (a session id), for [WithKey].
// A request without the cookie has no key.
func CookieKey(name string) func(*http.Request) string {
	return func(r *http.Request) string {
		c, err := r.Cookie(name)
		if err != nil {
			return ""
		}
		return c.Value
	}
}

// WithModel sets how the model of a request that carries no [Destination] is read (a
// header, a parsed body). The proxy sends a request with a model to the backends that
// serve it ([LabelModel]), and answers 503 with Retry-After when none is ready. The
// default reads no model: such requests go to any backend.
func WithModel(f func(*http.Request) string) ProxyOption {
	return func(p *Proxy) error {
		p.model = f
		return nil
	}
}

// WithPrompt sets how a request's prompt is read for prefix affinity
// ([Request.Prompt], scored by [Scoring]): middleware/llm's PromptPrefix reads it from
// the LLM request body its gateway parsed. f is called once per request, before the
// first pick; "" means no prompt. The default (nil) reads none and costs nothing.
func WithPrompt(f func(*http.Request) string) ProxyOption {
	return func(p *Proxy) error {
		p.prompt = f
		return nil
	}
}

// WithSetModel sets how a request's body is made to name the model the proxy sends it
// to, when that is not the model the client asked for (a script's or a route action's
// re-routing, a step down a fallback chain): an upstream serving llama-8b may refuse a
// body that asks for llama-70b. f is called with the inbound request before each
// attempt; it must leave r.Body reading the new body from its start, and
// r.ContentLength and r.GetBody matching it (middleware/llm's SetModel does, for the
// requests its gateway read; it is cheapest when f returns at once for a body that
// already names model). An error leaves the request as it was. The default (nil)
// sends bodies unchanged.
func WithSetModel(f func(r *http.Request, model string) error) ProxyOption {
	return func(p *Proxy) error {
		p.setModel = f
		return nil
	}
}

// WithRoute sends the requests whose [Destination] names route to pool instead of the
// proxy's own: what makes a route action or a script's re-routing change where a
// request goes. It may be given once per route.
func WithRoute(route string, pool *Pool) ProxyOption {
	return func(p *Proxy) error {
		switch {
		case route == "" || pool == nil:
			return fmt.Errorf("%w: route %q: empty route or nil pool", ErrInvalidConfig, route)
		case p.routes[route] != nil:
			return fmt.Errorf("%w: route %q given twice", ErrInvalidConfig, route)
		}
		if p.routes == nil {
			p.routes = map[string]*Pool{}
		}
		p.routes[route] = pool
		return nil
	}
}

// WithRetries sets the most retries of a request on connection failure, 0..10.
// The default is 2; 0 turns retries off.
func WithRetries(n int) ProxyOption {
	return func(p *Proxy) error {
		if n < 0 || n > 10 {
			return fmt.Errorf("%w: retries %d out of [0, 10]", ErrInvalidConfig, n)
		}
		p.retries = n
		return nil
	}
}

// WithRetryAfter sets the Retry-After sent with a 503 when no backend is ready, at
// least 1 s (whole seconds; the default is 1 s).
func WithRetryAfter(d time.Duration) ProxyOption {
	return func(p *Proxy) error {
		if d < time.Second {
			return fmt.Errorf("%w: retry-after %v is below 1s", ErrInvalidConfig, d)
		}
		p.retryAfter = strconv.Itoa(int(d / time.Second))
		return nil
	}
}

// WithTransport sets the round tripper to backends. The default is a clone of
// [http.DefaultTransport] with 256 idle connections per host.
func WithTransport(t http.RoundTripper) ProxyOption {
	return func(p *Proxy) error {
		if t == nil {
			return fmt.Errorf("%w: nil transport", ErrInvalidConfig)
		}
		p.transport = t
		return nil
	}
}

// WithTrustForwarded keeps the client's X-Forwarded-For chain and appends to it, as
// behind a trusted load balancer. By default inbound X-Forwarded-* headers are
// dropped and replaced, so clients cannot spoof them.
func WithTrustForwarded() ProxyOption {
	return func(p *Proxy) error {
		p.trust = true
		return nil
	}
}

// WithPreserveHost sends the client's Host header to backends rather than the
// backend's host.
func WithPreserveHost() ProxyOption {
	return func(p *Proxy) error {
		p.preserve = true
		return nil
	}
}

// WithFlushInterval sets the reverse proxy's FlushInterval for responses with a
// Content-Length: 0 (the default) buffers them as usual, a negative value flushes after
// every write, a positive one at that period. Server-sent events and responses without
// a Content-Length are flushed after every write whatever this says.
func WithFlushInterval(d time.Duration) ProxyOption {
	return func(p *Proxy) error {
		p.flush = d
		return nil
	}
}

// WithErrorLog sets the reverse proxy's error log. The default is the log package's
// standard logger.
func WithErrorLog(l *log.Logger) ProxyOption {
	return func(p *Proxy) error {
		if l == nil {
			return fmt.Errorf("%w: nil error log", ErrInvalidConfig)
		}
		p.errorLog = l
		return nil
	}
}

// WithBufferPool sets the buffers used to copy bodies. The default is a pool of
// 32 KiB buffers.
func WithBufferPool(b httputil.BufferPool) ProxyOption {
	return func(p *Proxy) error {
		if b == nil {
			return fmt.Errorf("%w: nil buffer pool", ErrInvalidConfig)
		}
		p.bufferPool = b
		return nil
	}
}

// NewProxy returns a proxy to pool's backends. It reports every bad option at once.
func NewProxy(pool *Pool, opts ...ProxyOption) (*Proxy, error) {
	p := &Proxy{pool: pool, retries: 2, retryAfter: "1", budgetCap: 100_000}
	var errs []error
	if pool == nil {
		errs = append(errs, fmt.Errorf("%w: nil pool", ErrInvalidConfig))
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("%w: nil option", ErrInvalidConfig))
			continue
		}
		if err := o(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.budget.Store(p.budgetCap)
	if p.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		p.transport = t
	}
	if p.bufferPool == nil {
		p.bufferPool = NewBufferPool()
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.transport,
		FlushInterval:  p.flush,
		ErrorLog:       p.errorLog,
		BufferPool:     p.bufferPool,
		ModifyResponse: modifyResponse,
		ErrorHandler:   errorHandler,
	}
	return p, nil
}

// ProxyStats counts what a proxy did.
type ProxyStats struct {
	// Retries counts requests retried on another backend after a failure to connect.
	Retries uint64
	// Fallback counts steps down fallback chains ([WithFallback]).
	Fallback FallbackStats
}

// Stats returns the proxy's counts.
func (p *Proxy) Stats() ProxyStats {
	st := ProxyStats{Retries: p.retriesDone.Load()}
	if f := p.fb; f != nil {
		st.Fallback = FallbackStats{
			RateLimited:  f.counts[FallbackRateLimited].Load(),
			ServerErrors: f.counts[FallbackServerError].Load(),
			Timeouts:     f.counts[FallbackTimeout].Load(),
			Unavailable:  f.counts[FallbackUnavailable].Load(),
			Denied:       f.denied.Load(),
		}
	}
	return st
}

// proxyState is one request's state, shared with the reverse proxy's hooks through
// the request's context: it is that context, the request's own with itself as the
// value of stateKey (see [proxyState.Value]), so that handing it over costs no
// allocation beyond the state's own (BenchmarkProxyHandler). [WithDestination]
// makes one too, carrying the destination, and the proxy that serves the request
// takes it over rather than copying the request again.
type proxyState struct {
	parent  context.Context // the context it wraps
	dest    Destination
	hasDest bool
	claimed atomic.Bool // a proxy serves the request with this state

	req     Request
	backend *Backend
	status  int
	err     error

	// Fallback chains only.
	fb          *fallbacks
	canFallback bool          // a step down the chain is left
	fallback    FallbackClass // why this attempt moves on; 0 when it does not
	retryAfter  time.Duration // a 429's
	headers     atomic.Bool   // response headers arrived (the timeout no longer applies)
}

type stateKey struct{}

// stateFor returns the state a proxy serves r with, and r with it as its context:
// the state WithDestination made, if r's context is one no proxy has claimed, or else
// a new one over r's context.
func stateFor(r *http.Request) (*proxyState, *http.Request) {
	if st, ok := r.Context().(*proxyState); ok && st.claimed.CompareAndSwap(false, true) {
		return st, r
	}
	st := &proxyState{parent: r.Context()}
	st.claimed.Store(true)
	return st, r.WithContext(st)
}

// The context.Context methods: the parent's, but for stateKey's value (the state)
// and destinationKey's (the destination, when it carries one).
func (st *proxyState) Deadline() (time.Time, bool) { return st.parent.Deadline() }
func (st *proxyState) Done() <-chan struct{}       { return st.parent.Done() }
func (st *proxyState) Err() error                  { return st.parent.Err() }
func (st *proxyState) Value(key any) any {
	switch key {
	case stateKey{}:
		if st.claimed.Load() {
			return st
		}
	case destinationKey{}:
		if st.hasDest {
			return &st.dest // a pointer: boxing the struct would allocate on every read
		}
	}
	return st.parent.Value(key)
}

// errCopyAborted is the outcome of a response whose body could not be copied whole.
var errCopyAborted = errors.New("balancer: response body copy aborted")

func stateOf(r *http.Request) *proxyState {
	st, _ := r.Context().Value(stateKey{}).(*proxyState)
	return st
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	if p.trust {
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetURL(st.backend.url)
	pr.SetXForwarded()
	if p.preserve {
		pr.Out.Host = pr.In.Host
	}
}

func modifyResponse(res *http.Response) error {
	st := stateOf(res.Request)
	if st == nil {
		return nil
	}
	st.status = res.StatusCode
	if st.fb != nil {
		st.headers.Store(true)
		if c := classOf(res.StatusCode); c != 0 && st.canFallback && st.fb.withdraw(c) {
			st.fallback = c
			if c == FallbackRateLimited {
				st.retryAfter = retryAfter(res.Header)
			}
			return errFallback
		}
	}
	return nil
}

// errorHandler keeps the error for ServeHTTP, which decides between a retry and an
// answer; it writes nothing.
func errorHandler(_ http.ResponseWriter, r *http.Request, err error) {
	if st := stateOf(r); st != nil {
		st.err = err
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// ServeHTTP proxies r to a backend of the pool.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, r := stateFor(r)
	if p.hook != nil {
		p.serveHooked(w, r, st)
		return
	}
	p.serve(w, r, st)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, st *proxyState) {
	st.req.HTTP = r
	if p.key != nil {
		st.req.Key = p.key(r)
	}
	pool := p.pool
	if d, ok := DestinationFrom(r.Context()); ok {
		st.req.Model = d.Model
		if rp := p.routes[d.Route]; rp != nil {
			pool = rp
		}
	} else if p.model != nil {
		st.req.Model = p.model(r)
	}
	if p.prompt != nil {
		st.req.Prompt = p.prompt(r)
	}
	if p.fb != nil && st.req.Model != "" {
		if chain := p.fb.chains[st.req.Model]; chain != nil {
			st.fb = p.fb
			p.serveChain(w, r, st, pool, chain)
			return
		}
	}
	if p.setModel != nil && st.req.Model != "" {
		p.setModel(r, st.req.Model) // on error the body goes as it came
	}
	p.serveOnce(w, r, st, pool)
}

// serveOnce proxies r to a backend of pool, retrying failures to connect.
func (p *Proxy) serveOnce(w http.ResponseWriter, r *http.Request, st *proxyState, pool *Pool) {
	out := r // its context is st
	retryable := p.retries > 0 && idempotent(r.Method) && (r.Body == nil || r.Body == http.NoBody)
	if retryable {
		p.deposit()
	}
	clock := pool.clock
	start := clock.Now()
	var cur Result // the attempt in progress, not yet done
	defer func() {
		if cur.Backend == nil {
			return
		}
		// The reverse proxy panics with http.ErrAbortHandler when copying the body
		// fails (the backend or the client broke the connection): end the attempt,
		// and let the panic go on to the server, which aborts the response.
		err := errCopyAborted
		if r.Context().Err() != nil {
			err = context.Canceled
		}
		end := clock.Now()
		cur.Done(Outcome{Latency: end.Sub(start), Status: st.status, Err: err, At: end})
	}()
	for attempt := 0; ; attempt++ {
		st.req.Now = start
		res, err := pool.Pick(&st.req)
		if err != nil {
			w.Header().Set("Retry-After", p.retryAfter)
			http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
			return
		}
		st.backend, st.status, st.err = res.Backend, 0, nil
		cur = res
		p.rp.ServeHTTP(w, out)
		cur = Result{}
		end := clock.Now()
		res.Done(Outcome{Latency: end.Sub(start), Status: st.status, Err: st.err, At: end})
		if st.err == nil {
			return
		}
		if retryable && attempt < p.retries && isDialError(st.err) && r.Context().Err() == nil && p.withdraw() {
			p.retriesDone.Add(1)
			st.req.Avoid = res.Backend
			start = end
			continue
		}
		code := http.StatusBadGateway
		if isTimeout(st.err) {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, http.StatusText(code), code)
		return
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *Proxy) deposit() {
	if p.budget.Load() < p.budgetCap {
		if v := p.budget.Add(200); v > p.budgetCap {
			p.budget.Store(p.budgetCap)
		}
	}
}

func (p *Proxy) withdraw() bool {
	for {
		v := p.budget.Load()
		if v < 1000 {
			return false
		}
		if p.budget.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// BufferPool is an [httputil.BufferPool] of 32 KiB buffers backed by a [sync.Pool].
// It is safe for concurrent use.
type BufferPool struct{ pool sync.Pool }

// NewBufferPool returns an empty buffer pool.
func NewBufferPool() *BufferPool {
	return &BufferPool{pool: sync.Pool{New: func() any {
		b := make([]byte, 32<<10)
		return &b
	}}}
}

// Get returns a buffer.
func (b *BufferPool) Get() []byte { return *(b.pool.Get().(*[]byte)) }

// Put returns a buffer to the pool.
func (b *BufferPool) Put(buf []byte) {
	if cap(buf) < 32<<10 {
		return
	}
	buf = buf[:cap(buf)]
	b.pool.Put(&buf)
}

// CloseIdleConnections closes the idle connections of the proxy's transport, when it
// has such a method (as [http.Transport] does).
func (p *Proxy) CloseIdleConnections() {
	if t, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
