package llm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// exchange is one LLM request in flight, pooled: what was parsed from its body, the
// body's buffer and its current reader, and the response writer that reads usage as
// the response passes. It goes back to the pool when the handler returns; the body's
// buffer follows once no reader uses it (see body).
type exchange struct {
	g       *Gateway
	req     Request
	cur     *bodyBuf // the body as it is now; req's spans point into it
	rd      *body    // r.Body, the current reader of cur
	getBody func() (io.ReadCloser, error)
	rw      respWriter
	start   time.Time
	priced  *Model
	res     Reservation
}

func newExchange(g *Gateway) *exchange {
	x := &exchange{g: g}
	x.getBody = x.copyBody
	x.rw.x = x
	return x
}

// end releases the body's reader; with recycle, it also lets go of the buffer and puts
// the exchange back in the pool.
func (x *exchange) end(recycle bool) {
	if x.rd != nil {
		x.rd.release()
		x.rd = nil
	}
	if !recycle {
		return // still referenced (a panic's recoverer may hold the writer)
	}
	if x.cur != nil {
		x.cur.unref()
	}
	g := x.g
	x.req.reset()
	x.rw.reset()
	*x = exchange{g: g, req: x.req, getBody: x.getBody, rw: x.rw}
	x.rw.x = x
	g.pool.Put(x)
}

// attach gives r a fresh reader of the body as it is now.
func (x *exchange) attach(r *http.Request) {
	if x.rd != nil {
		x.rd.release()
	}
	x.rd = newBody(x, x.cur)
	r.Body = x.rd
	r.GetBody = x.getBody
	r.ContentLength = int64(len(x.cur.b))
}

// copyBody is the request's GetBody: a fresh reader over a copy of the body, for a
// transport or router that sends the request again.
func (x *exchange) copyBody() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(bytes.Clone(x.cur.b))), nil
}

// setModel rewrites the body's model value into a new buffer (readers of the old one
// may still be reading it) and gives r a reader of it; the same model only rewinds.
func (x *exchange) setModel(r *http.Request, model string) {
	q := &x.req
	if model == q.Model {
		if x.rd == nil || !x.rd.fresh() {
			x.attach(r)
		}
		return
	}
	var scratch [64]byte
	quoted := appendJSONString(scratch[:0], model)
	old := x.cur.b
	nb := getBuf(&x.g.bufs, len(old)-(q.modelAt[1]-q.modelAt[0])+len(quoted))
	nb.b = append(nb.b, old[:q.modelAt[0]]...)
	nb.b = append(nb.b, quoted...)
	nb.b = append(nb.b, old[q.modelAt[1]:]...)
	shift := len(quoted) - (q.modelAt[1] - q.modelAt[0])
	for i, s := range q.spans {
		if s[0] > q.modelAt[0] {
			q.spans[i] = [2]int{s[0] + shift, s[1] + shift}
		}
	}
	q.modelAt[1] = q.modelAt[0] + len(quoted)
	x.cur.unref()
	x.cur = nb
	q.body = nb.b
	q.Model = model
	x.attach(r)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, every other byte as it is.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// readBody reads r's body into a buffer, x.cur, up to limit bytes.
func (x *exchange) readBody(r *http.Request, limit int64) (tooLarge bool, err error) {
	if r.ContentLength > limit {
		return true, nil
	}
	want := 512
	if r.ContentLength > 0 {
		want = int(r.ContentLength) + 1 // room to see EOF in one read
	}
	x.cur = getBuf(&x.g.bufs, want)
	if r.Body == nil || r.Body == http.NoBody {
		return false, nil
	}
	buf := x.cur.b
	defer func() { x.cur.b = buf }()
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return true, nil
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// serve is the gateway's handler.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ep := EndpointOf(r.URL.Path)
	if ep == EndpointUnknown || r.Method != http.MethodPost {
		next.ServeHTTP(w, r)
		return
	}
	g.stats.requests.Add(1)
	x := g.pool.Get().(*exchange)
	recycle := true
	defer func() {
		// Whoever holds r after the handler (an outer middleware) must not reach the
		// exchange, which goes back to the pool; a transport still sending the body
		// holds its own reader, which fails from now on.
		if x.rd != nil && r.Body == io.ReadCloser(x.rd) {
			r.Body, r.GetBody = http.NoBody, nil
		}
		x.end(recycle)
	}()
	x.start = g.opts.clock.Now()

	tooLarge, err := x.readBody(r, g.cfg.MaxBodyBytes)
	switch {
	case tooLarge:
		g.stats.tooLarge.Add(1)
		errTooLarge.write(w, ep)
		return
	case err != nil:
		if r.Context().Err() == nil {
			errUnreadable.write(w, ep)
		}
		return
	}
	models := g.models.Load()
	q := &x.req
	if err := parse(x.cur.b, ep, q, models.intern); err != nil {
		g.stats.malformed.Add(1)
		apiErrorOf(err).write(w, ep)
		return
	}
	if v := r.Header[g.tenant]; len(v) > 0 && v[0] != "" {
		q.Tenant = v[0]
	} else {
		q.Tenant = q.User
	}
	q.PromptTokens = g.opts.estimator.Estimate(q)

	// From here on the body is the exchange's reader, so FromRequest finds it.
	x.attach(r)
	if !g.cfg.KeepAcceptEncoding {
		delete(r.Header, "Accept-Encoding") // canonical: Del would canonicalize it again
	}

	if e := g.admit(w, r, x, models); e != nil {
		e.write(w, ep)
		return
	}
	x.rw.begin(w, g.cfg.MaxUsageBytes)
	// A panicking handler (httputil.ReverseProxy panics with http.ErrAbortHandler
	// when an upstream's stream breaks): the request is still recorded and settled
	// with what came, and the panic goes on. The writer may still be referenced by
	// whoever recovers, so the exchange is left to the garbage collector.
	recycle = false
	defer func() {
		if !recycle {
			g.finish(x, r.Context())
		}
	}()
	next.ServeHTTP(&x.rw, r)
	recycle = true
	g.finish(x, r.Context())
}

// intern finds a known model's name without allocating.
func (t *Models) intern(b []byte) (string, bool) {
	if m, ok := t.lookupBytes(b); ok {
		return m.Name, true
	}
	return "", false
}

func apiErrorOf(err error) *apiError {
	switch {
	case errors.Is(err, ErrNoModel):
		return errMissingModel
	case errors.Is(err, ErrNoPrompt):
		return errEmptyPrompt
	case errors.Is(err, ErrInvalidField):
		return errWrongType
	}
	return errMalformedBody
}

// admit runs the hook and the context guard; it returns the rejection, if any.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, x *exchange, models *Models) *apiError {
	q := &x.req
	if h := g.opts.hook; h != nil {
		k := middleware.Keys{Route: r.Pattern, Tenant: q.Tenant, Model: q.Model}
		if k.Route == "" {
			k.Route = r.URL.Path
		}
		k2, v := h(r, k)
		for name, vs := range v.Header {
			w.Header()[name] = vs
		}
		if v.Status != 0 {
			g.stats.hookRejected.Add(1)
			if v.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(int64((v.RetryAfter+time.Second-1)/time.Second), 10))
			}
			return hookError(v.Status, v.Body)
		}
		if k2.Tenant != "" {
			q.Tenant = k2.Tenant
		}
		if k2.Model != "" && k2.Model != q.Model {
			x.setModel(r, k2.Model)
			q.PromptTokens = g.opts.estimator.Estimate(q)
		}
	}
	m, known := models.lookupName(q.Model)
	if !known && g.cfg.RejectUnknownModels {
		g.stats.unknownModel.Add(1)
		return errUnknownModel
	}
	if known {
		if e := g.guardCheck(w, r, x, m, models); e != nil {
			return e
		}
		m, _ = models.lookupName(q.Model)
	}
	x.priced = m
	if b := g.opts.budgets; b != nil {
		return g.reserve(w, x, b)
	}
	return nil
}

// reserve takes the request's tokens from its budgets.
func (g *Gateway) reserve(w http.ResponseWriter, x *exchange, b *Budgets) *apiError {
	q := &x.req
	out := q.MaxOutputTokens
	if out == 0 && q.Endpoint != EndpointEmbeddings {
		out = g.cfg.OutputReserve
	}
	res, err := b.Reserve(q.Tenant, q.Model, q.PromptTokens+out, x.start)
	if res.Limit >= 0 {
		h := w.Header()
		h["X-Ratelimit-Limit-Tokens"] = []string{strconv.FormatInt(res.Limit, 10)}
		h["X-Ratelimit-Remaining-Tokens"] = []string{strconv.FormatInt(max(res.Remaining, 0), 10)}
		h["X-Ratelimit-Reset-Tokens"] = []string{res.Reset.Round(time.Millisecond).String()}
	}
	if err == nil {
		x.res = res
		return nil
	}
	g.stats.budgetRejected.Add(1)
	// The rejected request never reaches the middleware inside, so it is recorded
	// here, as the admission records its own: the policy and the dashboard's
	// rejections see it.
	rej := metrics.Observation{Outcome: metrics.OutcomeRejected}
	g.opts.registry.Window(metrics.ScopeModel, q.Model).RecordAt(x.start, rej)
	g.opts.registry.Window(metrics.ScopeTenant, q.Tenant).RecordAt(x.start, rej)
	if res.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((res.RetryAfter+time.Second-1)/time.Second), 10))
	}
	switch {
	case errors.Is(err, ErrOverQuota):
		return errTokenQuota
	case errors.Is(err, ErrTooLargeForBudget):
		return errTooBigForBudget
	}
	return errTokenRate
}

// guardCheck refuses or re-routes a request too large for m's context window.
func (g *Gateway) guardCheck(w http.ResponseWriter, r *http.Request, x *exchange, m *Model, models *Models) *apiError {
	mode := GuardMode(g.guard.Load())
	q := &x.req
	if mode == GuardOff || m.ContextWindow == 0 || q.ContextTokens() <= m.ContextWindow {
		return nil
	}
	for mode == GuardRoute && m.Overflow != "" {
		o, ok := models.lookupName(m.Overflow)
		if !ok {
			break
		}
		x.setModel(r, o.Name)
		q.PromptTokens = g.opts.estimator.Estimate(q)
		if o.ContextWindow == 0 || q.ContextTokens() <= o.ContextWindow {
			g.stats.guardRouted.Add(1)
			w.Header().Set(RoutedHeader, o.Name)
			return nil
		}
		m = o
	}
	g.stats.guardRefused.Add(1)
	return errContextLength
}

// RoutedHeader is set on the response to a request the context guard sent to a
// larger-context model, naming that model.
const RoutedHeader = "X-Autoscale-Model-Routed"

// finish reads the usage, records it and calibrates the estimator.
func (g *Gateway) finish(x *exchange, ctx context.Context) {
	end := g.opts.clock.Now()
	q := &x.req
	u := x.rw.usage()
	status := x.rw.statusCode()
	ok := status >= 200 && status < 300
	if u.Lied {
		g.stats.lied.Add(1)
	}
	if ok && !u.Reported {
		g.stats.noUsage.Add(1)
	}
	if ok && u.inOK && u.InputTokens > 0 {
		g.opts.estimator.Observe(q, u.InputTokens)
	}
	in, out := x.used(u, ok)
	if b := g.opts.budgets; b != nil && x.res.Held() {
		b.Settle(x.res, in+out, end)
		x.res = Reservation{}
	}
	o := metrics.Observation{Latency: end.Sub(x.start)}
	switch {
	case ctx.Err() != nil:
		o.Outcome = metrics.OutcomeCanceled
	case status >= 500:
		o.Outcome = metrics.OutcomeError
	}
	reg := g.opts.registry
	rec := func(model, tenant metrics.Scope, obs metrics.Observation) {
		reg.Window(model, q.Model).RecordAt(end, obs)
		if q.Tenant != "" {
			reg.Window(tenant, q.Tenant).RecordAt(end, obs)
		}
	}
	o.Value = float64(in)
	rec(ScopeInputTokens, ScopeTenantInputTokens, o)
	o.Value = float64(out)
	rec(ScopeOutputTokens, ScopeTenantOutputTokens, o)
	if x.priced != nil {
		o.Value = x.priced.Cost(in, out)
		rec(ScopeCost, ScopeTenantCost, o)
	}
	if first := x.rw.firstToken; ok && !first.IsZero() {
		rec(ScopeTTFT, ScopeTenantTTFT, metrics.Observation{Latency: first.Sub(x.start), Outcome: o.Outcome})
		if q.Stream && out > 1 {
			rec(ScopeTPOT, ScopeTenantTPOT, metrics.Observation{Latency: end.Sub(first) / time.Duration(out-1), Outcome: o.Outcome})
		}
	}
}

// used is what the request is charged: the reported usage, or in its place the
// prompt's estimate and, for the output, the content events counted (streams) or the
// estimate of the content's text. A response that was not a success used nothing; a
// reported output above the request's max output tokens is held to it.
func (x *exchange) used(u Usage, ok bool) (in, out int64) {
	q := &x.req
	if !ok {
		return 0, 0
	}
	if x.rw.first.IsZero() {
		return 0, 0 // nothing came back: the client left, or the upstream failed
	}
	in, out = u.InputTokens, u.OutputTokens
	if !u.inOK || in == 0 {
		in = q.PromptTokens
	}
	if !u.outOK {
		if q.Stream {
			out = u.Chunks
		} else if n := u.outputText.bytes(); n > 0 {
			out = x.g.opts.estimator.textTokens(q.Model, u.outputText)
		}
	}
	if q.MaxOutputTokens > 0 && out > q.MaxOutputTokens {
		out = q.MaxOutputTokens
	}
	return in, max(out, 0)
}
