package luabind

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	lua "github.com/yuin/gopher-lua"
)

// Request is what the per-request hooks see of a request. The host fills it; the hooks
// read it through a read-only view and never keep it past the call.
type Request struct {
	Method, Path, Host string
	// Header is read by req:header(name) (canonicalized, first value).
	Header http.Header
	// RawQuery is read by req:query(name) (first value, unescaped).
	RawQuery string
	// Tenant, Route and Model are the host's classification; "" when it has none.
	Tenant, Route, Model string
	// Priority is the request's priority; larger is more important.
	Priority int
	// ContentLength is the request body's length; -1 when unknown.
	ContentLength int64
	// Tokens is the estimated number of tokens (AI gateways); 0 means the host did
	// not estimate, and Lua sees nil.
	Tokens int64
}

// Header is one response header a hook asks to set.
type Header struct{ Name, Value string }

// Decision is what on_request decided. The zero value allows the request unchanged.
type Decision struct {
	// Reject says to answer the request with Status (and RetryAfter and Body) instead
	// of serving it.
	Reject bool
	// Status is the rejection's status code, 400..599.
	Status int
	// RetryAfter is the Retry-After hint; zero for none.
	RetryAfter time.Duration
	// Body is the rejection's body, at most 64 KiB; "" for the host's default.
	Body string
	// Priority replaces the request's priority when SetPriority is true.
	Priority    int
	SetPriority bool
	// Route, Tenant and Model replace the request's when not "".
	Route, Tenant, Model string
	// Headers are response headers to set.
	Headers []Header
}

// failClosedDecision is the decision of a failed on_request in FailClosed mode.
var failClosedDecision = Decision{Reject: true, Status: http.StatusServiceUnavailable}

// OnRequest runs the script's on_request. Without the hook it allows the request at
// no cost. The returned Decision is always usable: when the hook fails, it allows the
// request (fail-open) or rejects it with 503 (fail-closed, and the error wraps
// [ErrFailClosed]); the error says what went wrong and is already counted and logged.
// ctx (with Limits.PoolWait) bounds only the wait for a free VM.
func (r *Runtime) OnRequest(ctx context.Context, req *Request) (Decision, error) {
	p := r.prog.Load()
	if !p.has[hRequest] {
		return Decision{}, nil
	}
	v, err := r.acquire(ctx, p, hRequest)
	if err != nil {
		return r.requestFailed(ctx, err)
	}
	v.reqv.set(v, req)
	L := v.L
	L.Push(v.fns[hRequest])
	L.Push(v.reqv.proxy)
	if err := v.pcall(1, 1, r.cfg.limits.budget(hRequest)); err != nil {
		v.reqv.clear()
		cerr := v.callErr(hRequest, err)
		r.release(v, false)
		return r.requestFailed(ctx, cerr)
	}
	ret := L.Get(-1)
	L.Pop(1)
	d, err := decodeDecision(ret)
	v.reqv.clear()
	r.release(v, true)
	if err != nil {
		return r.requestFailed(ctx, fmt.Errorf("%w: on_request: %w", ErrBadReturn, err))
	}
	return d, nil
}

func (r *Runtime) requestFailed(ctx context.Context, err error) (Decision, error) {
	err = r.failed(ctx, hRequest, err)
	if r.cfg.fail[hRequest] == FailClosed {
		return failClosedDecision, err
	}
	return Decision{}, err
}

// reqView is a VM's reusable request view: a protected proxy over a data table whose
// fields are rewritten only when they change between calls. It copies what the
// req:header and req:query methods read rather than keeping the caller's *Request,
// so that the caller's Request does not escape to the heap (an allocation per
// request; BenchmarkOnRequest).
type reqView struct {
	proxy, data *lua.LTable
	live        bool // between set and clear: the methods answer
	header      http.Header
	rawQuery    string
	last        Request
	valid       bool
	// names caches the canonical forms of the header names the script asked for, so
	// that req:header("X-Debug") does not canonicalize its constant on every request
	// (nor allocate, for a name not in canonical form): a few slots, taken in turn.
	names    [4]canonName
	nextName int
}

type canonName struct{ name, canon string }

// maxCachedName bounds the header names reqView.canonical keeps.
const maxCachedName = 64

// canonical returns textproto.CanonicalMIMEHeaderKey(name), from the cache when the
// script asked for name recently.
func (rv *reqView) canonical(name string) string {
	for i := range rv.names {
		if e := &rv.names[i]; e.name == name && e.canon != "" {
			return e.canon
		}
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	if canon != "" && len(name) <= maxCachedName {
		rv.names[rv.nextName] = canonName{name, canon}
		rv.nextName = (rv.nextName + 1) % len(rv.names)
	}
	return canon
}

// clear ends the call: the methods answer nil until the next set.
func (rv *reqView) clear() { rv.live, rv.header, rv.rawQuery = false, nil, "" }

var requestFields = [...]string{"method", "path", "host", "tenant", "route", "model", "priority", "content_length", "tokens", "header", "query"}

func (rv *reqView) init(v *vm) {
	L := v.L
	rv.data = L.CreateTable(0, len(requestFields))
	rv.data.RawSetString("header", L.NewFunction(func(L *lua.LState) int {
		name := stringArg(L, rv.proxy)
		if !rv.live || rv.header == nil {
			L.Push(lua.LNil)
			return 1
		}
		vals := rv.header[rv.canonical(name)]
		if len(vals) == 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(v.str(vals[0]))
		return 1
	}))
	rv.data.RawSetString("query", L.NewFunction(func(L *lua.LState) int {
		name := stringArg(L, rv.proxy)
		if !rv.live {
			L.Push(lua.LNil)
			return 1
		}
		val, ok := queryValue(rv.rawQuery, name)
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(v.str(val))
		return 1
	}))
	v.strict(rv.data, "req", requestFields[:])
	rv.proxy = v.protect(rv.data)
}

// stringArg reads the name argument of a method callable as view:f(name) or
// view.f(name).
func stringArg(L *lua.LState, self lua.LValue) string {
	if L.Get(1) == self {
		return L.CheckString(2)
	}
	return L.CheckString(1)
}

// set points the view at req, rewriting only the fields that changed.
func (rv *reqView) set(v *vm, req *Request) {
	rv.live, rv.header, rv.rawQuery = true, req.Header, req.RawQuery
	d, l := rv.data, &rv.last
	first := !rv.valid
	rv.valid = true
	setStr := func(key string, old *string, s string) {
		if first || *old != s {
			*old = s
			d.RawSetString(key, v.str(s))
		}
	}
	setStr("method", &l.Method, req.Method)
	setStr("path", &l.Path, req.Path)
	setStr("host", &l.Host, req.Host)
	setStr("tenant", &l.Tenant, req.Tenant)
	setStr("route", &l.Route, req.Route)
	setStr("model", &l.Model, req.Model)
	if first || l.Priority != req.Priority {
		l.Priority = req.Priority
		d.RawSetString("priority", lua.LNumber(req.Priority))
	}
	if first || l.ContentLength != req.ContentLength {
		l.ContentLength = req.ContentLength
		d.RawSetString("content_length", lua.LNumber(req.ContentLength))
	}
	if first || l.Tokens != req.Tokens {
		l.Tokens = req.Tokens
		if req.Tokens == 0 {
			d.RawSetString("tokens", lua.LNil)
		} else {
			d.RawSetString("tokens", lua.LNumber(req.Tokens))
		}
	}
}

// queryValue returns the first value of key in a raw query, without parsing the rest.
func queryValue(raw, key string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, val, _ := strings.Cut(kv, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			uk, err := url.QueryUnescape(k)
			if err != nil || uk != key {
				continue
			}
		}
		if !strings.ContainsAny(val, "%+") {
			return val, true
		}
		uv, err := url.QueryUnescape(val)
		if err != nil {
			return val, true
		}
		return uv, true
	}
	return "", false
}

// decodeDecision reads on_request's return value.
func decodeDecision(ret lua.LValue) (Decision, error) {
	var d Decision
	switch ret := ret.(type) {
	case *lua.LNilType:
		return d, nil
	case *lua.LTable:
		// Next, not ForEach, whose callback would be one allocation per request.
		for k, val := ret.Next(lua.LNil); k != lua.LNil; k, val = ret.Next(k) {
			key, ok := k.(lua.LString)
			if !ok {
				return Decision{}, fmt.Errorf("key %v is not a string", k)
			}
			if err := d.set(string(key), val); err != nil {
				return Decision{}, err
			}
		}
		if d.Reject && d.Status == 0 {
			d.Status = http.StatusForbidden
		}
		if d.Status != 0 {
			d.Reject = true
		}
		return d, nil
	}
	return d, fmt.Errorf("got a %s, want nil or a table", ret.Type())
}

func (d *Decision) set(key string, val lua.LValue) error {
	switch key {
	case "status":
		n, ok := intOf(val)
		if !ok || n < 400 || n > 599 {
			return fmt.Errorf("status %v is not an integer in [400, 599]", val)
		}
		d.Status = n
	case "reject":
		b, ok := val.(lua.LBool)
		if !ok {
			return fmt.Errorf("reject %v is not a boolean", val)
		}
		d.Reject = bool(b)
	case "retry_after":
		n, ok := val.(lua.LNumber)
		dur, ok2 := luaunit.Seconds(float64(n))
		if !ok || !ok2 || dur < 0 || dur > maxRetryAfter {
			return fmt.Errorf("retry_after %v is not a number of seconds in [0, %v]", val, maxRetryAfter.Seconds())
		}
		d.RetryAfter = dur
	case "body":
		s, ok := val.(lua.LString)
		if !ok || len(s) > 64<<10 {
			return fmt.Errorf("body is not a string of at most 64 KiB")
		}
		d.Body = string(s)
	case "priority":
		n, ok := intOf(val)
		if !ok {
			return fmt.Errorf("priority %v is not an integer", val)
		}
		d.Priority, d.SetPriority = n, true
	case "route", "tenant", "model":
		s, ok := val.(lua.LString)
		if !ok || s == "" || len(s) > 256 {
			return fmt.Errorf("%s %v is not a string of 1..256 bytes", key, val)
		}
		switch key {
		case "route":
			d.Route = string(s)
		case "tenant":
			d.Tenant = string(s)
		default:
			d.Model = string(s)
		}
	case "headers":
		t, ok := val.(*lua.LTable)
		if !ok {
			return fmt.Errorf("headers is not a table")
		}
		// Next, not ForEach, whose callback would be one allocation per request.
		for k, hv := t.Next(lua.LNil); k != lua.LNil; k, hv = t.Next(k) {
			name, ok1 := k.(lua.LString)
			value, ok2 := hv.(lua.LString)
			switch {
			case !ok1 || !ok2 || !validHeaderName(string(name)) || !validHeaderValue(string(value)):
				return fmt.Errorf("header %v: %v is not a valid header", k, hv)
			case len(d.Headers) >= 32:
				return fmt.Errorf("more than 32 headers")
			}
			d.Headers = append(d.Headers, Header{http.CanonicalHeaderKey(string(name)), string(value)})
		}
	default:
		return fmt.Errorf("unknown field %q", key)
	}
	return nil
}

// maxExactInt bounds the integers that all have an exact float64
// (a 53-bit mantissa): a Lua number beyond it may not be the integer it looks like.
const maxExactInt = 1 << 53

// intOf returns val as an int if it is an integral number.
func intOf(val lua.LValue) (int, bool) {
	n, ok := val.(lua.LNumber)
	if !ok || float64(n) != float64(int(n)) || n > maxExactInt || n < -maxExactInt {
		return 0, false
	}
	return int(n), true
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	if len(s) > 8<<10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// maxRetryAfter bounds the Retry-After a script's rejection may ask for: an hour.
const maxRetryAfter = time.Hour
