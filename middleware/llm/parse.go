package llm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Endpoint is the kind of API call a request makes, which decides the shape of its
// body and of its response's usage.
type Endpoint uint8

// The endpoints the package understands.
const (
	// EndpointUnknown is any other path; the gateway passes it through untouched.
	EndpointUnknown Endpoint = iota
	// EndpointChatCompletions is OpenAI's POST /v1/chat/completions.
	EndpointChatCompletions
	// EndpointCompletions is OpenAI's legacy POST /v1/completions.
	EndpointCompletions
	// EndpointEmbeddings is OpenAI's POST /v1/embeddings.
	EndpointEmbeddings
	// EndpointMessages is Anthropic's POST /v1/messages.
	EndpointMessages
)

// String names the endpoint by its path.
func (e Endpoint) String() string {
	switch e {
	case EndpointChatCompletions:
		return "/v1/chat/completions"
	case EndpointCompletions:
		return "/v1/completions"
	case EndpointEmbeddings:
		return "/v1/embeddings"
	case EndpointMessages:
		return "/v1/messages"
	}
	return "unknown"
}

// EndpointOf tells the endpoint from a URL path by its last segments, so that a
// gateway mounted under a prefix (/openai/v1/chat/completions) is recognized too.
func EndpointOf(path string) Endpoint {
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return EndpointChatCompletions
	case strings.HasSuffix(path, "/completions"):
		return EndpointCompletions
	case strings.HasSuffix(path, "/embeddings"):
		return EndpointEmbeddings
	case strings.HasSuffix(path, "/messages"):
		return EndpointMessages
	}
	return EndpointUnknown
}

// Errors [Parse] returns (wrapped). The gateway answers each with 400 and a fixed
// OpenAI-style error body.
var (
	// ErrMalformed: the body is not a JSON object, not valid UTF-8, or nested more
	// than 128 levels deep.
	ErrMalformed = errors.New("llm: malformed request body")
	// ErrNoModel: the body names no model (or the model is not a non-empty string).
	ErrNoModel = errors.New("llm: request names no model")
	// ErrNoPrompt: the messages list is empty or missing (prompt or input for the
	// completions and embeddings endpoints).
	ErrNoPrompt = errors.New("llm: request has no messages")
	// ErrInvalidField: a field the gateway reads has the wrong type (stream not a
	// boolean, max_tokens not a non-negative integer, messages not an array, ...).
	ErrInvalidField = errors.New("llm: request field of the wrong type")
)

// Request is what the gateway reads from an LLM API request body: the few fields that
// routing, budgets and the context guard need, and the character classes of the
// prompt's text that the token estimate is computed from. The text itself stays in
// the body; [Request.AppendText] decodes it.
//
// A Request filled by the [Gateway] belongs to the request: read it only until the
// handler returns. It is not safe for concurrent modification.
type Request struct {
	// Endpoint is the API called.
	Endpoint Endpoint
	// Model is the model asked for ("model").
	Model string
	// Stream says whether the client asked for a streamed (SSE) response.
	Stream bool
	// IncludeUsage is OpenAI's stream_options.include_usage: a streamed response then
	// ends with a chunk that carries usage.
	IncludeUsage bool
	// MaxOutputTokens is max_completion_tokens, max_tokens or max_output_tokens,
	// whichever the body gives (the first two both present: the former); 0 when
	// absent.
	MaxOutputTokens int64
	// User is OpenAI's "user" or Anthropic's metadata.user_id; "" when absent.
	User string
	// Tenant is who the request is charged to: the tenant header when set, else User
	// (set by the gateway; [Parse] leaves it empty).
	Tenant string
	// Messages counts the prompt's parts: chat messages and a system prompt, or the
	// strings of a completions prompt or an embeddings input.
	Messages int
	// Images counts image parts in the messages.
	Images int
	// InputTokens counts tokens given as token ids (a completions prompt or an
	// embeddings input of integer arrays): they need no estimate.
	InputTokens int64
	// TextBytes is the decoded length in bytes of the prompt's text (tool
	// definitions included).
	TextBytes int64
	// PromptTokens is the estimate of the prompt's tokens (set by the gateway or
	// [Estimator.Estimate]).
	PromptTokens int64

	text      counts
	body      []byte
	modelAt   [2]int // the model value's bytes in body, quotes included
	spans     [][2]int
	hasEscape bool
}

// ContextTokens is what the request may take of its model's context window: the
// prompt's estimate plus the output it allows.
func (r *Request) ContextTokens() int64 { return r.PromptTokens + r.MaxOutputTokens }

// Body returns the request body the Request was parsed from. It must not be modified.
func (r *Request) Body() []byte { return r.body }

// AppendText appends the prompt's text, decoded, to dst: each text string of the
// messages (or prompt, or input) followed by a newline.
func (r *Request) AppendText(dst []byte) []byte {
	for _, s := range r.spans {
		dst = unquote(dst, r.body[s[0]:s[1]])
		dst = append(dst, '\n')
	}
	return dst
}

func (r *Request) reset() {
	spans := r.spans[:0]
	*r = Request{spans: spans}
}

// Parse reads an LLM API request body for endpoint ep into req, which it resets first.
// It validates the whole body as JSON, reads only the fields [Request] holds, and
// keeps body (which must not change while req is used). It allocates only the model's
// and user's strings.
func Parse(body []byte, ep Endpoint, req *Request) error {
	return parse(body, ep, req, nil)
}

// intern maps a model name's bytes to a shared string without allocating, when known.
type intern func(b []byte) (string, bool)

func parse(body []byte, ep Endpoint, req *Request, in intern) error {
	req.reset()
	req.Endpoint = ep
	req.body = body
	p := parser{b: body, r: req}
	if err := p.top(in); err != nil {
		return err
	}
	if req.Model == "" {
		return ErrNoModel
	}
	if req.Messages == 0 && req.InputTokens == 0 {
		return ErrNoPrompt
	}
	req.TextBytes = req.text.bytes()
	return nil
}

type parser struct {
	b       []byte
	r       *Request
	maxTok  int64 // max_tokens
	maxComp int64 // max_completion_tokens
	maxOut  int64 // max_output_tokens
}

func malformed(err error) error { return fmt.Errorf("%w: %w", ErrMalformed, err) }

func invalid(field string) error { return fmt.Errorf("%w: %s", ErrInvalidField, field) }

// keyIs compares a raw key (quotes included) with name, decoding escapes if it has any.
// Every escape decodes to fewer bytes than it takes, so a key as long as name (plus
// its quotes) matches only byte for byte, and a shorter one never does: only a longer
// one is looked at for escapes.
func keyIs(key []byte, name string) bool {
	switch n := len(name) + 2; {
	case len(key) == n:
		return string(key[1:len(key)-1]) == name
	case len(key) < n:
		return false
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	var buf [64]byte
	return string(unquote(buf[:0], key)) == name
}

func (p *parser) top(in intern) error {
	b := p.b
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return malformed(errSyntax)
	}
	i, err := eachMember(b, i, func(key []byte, j int) (int, error) { return p.member(key, j, in) })
	if err != nil {
		return p.wrap(err)
	}
	if skipWS(b, i) != len(b) {
		return malformed(errSyntax)
	}
	switch {
	case p.maxComp > 0:
		p.r.MaxOutputTokens = p.maxComp
	case p.maxTok > 0:
		p.r.MaxOutputTokens = p.maxTok
	default:
		p.r.MaxOutputTokens = p.maxOut
	}
	return nil
}

// wrap marks scanner errors as ErrMalformed and passes the parser's own through.
func (p *parser) wrap(err error) error {
	if errors.Is(err, ErrInvalidField) || errors.Is(err, ErrMalformed) {
		return err
	}
	return malformed(err)
}

func (p *parser) member(key []byte, j int, in intern) (int, error) {
	b, r := p.b, p.r
	switch {
	case keyIs(key, "model"):
		if j >= len(b) || b[j] != '"' {
			if j < len(b) && b[j] == 'n' {
				return literal(b, j, "null")
			}
			return j, invalid("model")
		}
		end, esc, err := scanString(b, j, nil)
		if err != nil {
			return end, err
		}
		r.modelAt = [2]int{j, end}
		raw := b[j+1 : end-1]
		if esc {
			r.Model = string(unquote(nil, b[j:end]))
		} else if s, ok := lookup(in, raw); ok {
			r.Model = s
		} else {
			r.Model = string(raw)
		}
		return end, nil
	case keyIs(key, "stream"):
		return p.boolean(j, "stream", &r.Stream)
	case keyIs(key, "stream_options"):
		if j < len(b) && b[j] == 'n' {
			return literal(b, j, "null")
		}
		if j >= len(b) || b[j] != '{' {
			return j, invalid("stream_options")
		}
		return eachMember(b, j, func(k []byte, v int) (int, error) {
			if keyIs(k, "include_usage") {
				return p.boolean(v, "stream_options.include_usage", &r.IncludeUsage)
			}
			return skipValue(b, v, 2)
		})
	case keyIs(key, "max_tokens"):
		return p.integer(j, "max_tokens", &p.maxTok)
	case keyIs(key, "max_completion_tokens"):
		return p.integer(j, "max_completion_tokens", &p.maxComp)
	case keyIs(key, "max_output_tokens"):
		return p.integer(j, "max_output_tokens", &p.maxOut)
	case keyIs(key, "user"):
		return p.str(j, "user", &r.User)
	case keyIs(key, "metadata"):
		if j < len(b) && b[j] == '{' {
			return eachMember(b, j, func(k []byte, v int) (int, error) {
				if keyIs(k, "user_id") && r.User == "" {
					return p.str(v, "metadata.user_id", &r.User)
				}
				return skipValue(b, v, 2)
			})
		}
		return skipValue(b, j, 1)
	case keyIs(key, "messages"):
		if j >= len(b) || b[j] != '[' {
			return j, invalid("messages")
		}
		return eachElement(b, j, func(v int) (int, error) {
			if b[v] != '{' {
				return v, invalid("messages")
			}
			r.Messages++
			return eachMember(b, v, func(k []byte, x int) (int, error) {
				if keyIs(k, "content") {
					return p.content(x, 3)
				}
				if keyIs(k, "tool_calls") || keyIs(k, "function_call") {
					return p.raw(x, 3)
				}
				return skipValue(b, x, 3)
			})
		})
	case keyIs(key, "system"):
		// Anthropic: a string or an array of text blocks.
		if j < len(b) && (b[j] == '"' || b[j] == '[') {
			r.Messages++
		}
		return p.content(j, 1)
	case keyIs(key, "prompt"), keyIs(key, "input"):
		return p.prompt(j)
	case keyIs(key, "tools"), keyIs(key, "functions"):
		return p.raw(j, 1)
	}
	return skipValue(b, j, 1)
}

func lookup(in intern, raw []byte) (string, bool) {
	if in == nil {
		return "", false
	}
	return in(raw)
}

func (p *parser) boolean(j int, field string, dst *bool) (int, error) {
	b := p.b
	if j < len(b) {
		switch b[j] {
		case 't':
			*dst = true
			return literal(b, j, "true")
		case 'f':
			*dst = false
			return literal(b, j, "false")
		case 'n':
			return literal(b, j, "null")
		}
	}
	return j, invalid(field)
}

func (p *parser) integer(j int, field string, dst *int64) (int, error) {
	b := p.b
	if j < len(b) && b[j] == 'n' {
		return literal(b, j, "null")
	}
	if j >= len(b) || !(b[j] == '-' || b[j] >= '0' && b[j] <= '9') {
		return j, invalid(field)
	}
	v, next, ok, err := scanInt(b, j)
	if err != nil {
		return next, err
	}
	if !ok {
		return next, invalid(field)
	}
	*dst = v
	return next, nil
}

func (p *parser) str(j int, field string, dst *string) (int, error) {
	b := p.b
	if j < len(b) && b[j] == 'n' {
		return literal(b, j, "null")
	}
	if j >= len(b) || b[j] != '"' {
		return j, invalid(field)
	}
	end, esc, err := scanString(b, j, nil)
	if err != nil {
		return end, err
	}
	if esc {
		*dst = string(unquote(nil, b[j:end]))
	} else {
		*dst = string(b[j+1 : end-1])
	}
	return end, nil
}

// text scans a string that is prompt text, counting it and keeping its span.
func (p *parser) text(j int) (int, error) {
	end, esc, err := scanString(p.b, j, &p.r.text)
	if err != nil {
		return end, err
	}
	p.r.hasEscape = p.r.hasEscape || esc
	p.r.spans = append(p.r.spans, [2]int{j, end})
	return end, nil
}

// content reads a message's content: a string, or an array of parts whose "text" (and
// nested "content", as in Anthropic's tool results) is prompt text.
func (p *parser) content(j, depth int) (int, error) {
	b := p.b
	if depth > maxDepth {
		return j, errDepth
	}
	if j >= len(b) {
		return j, errSyntax
	}
	switch b[j] {
	case '"':
		return p.text(j)
	case '[':
		return eachElement(b, j, func(v int) (int, error) { return p.content(v, depth+1) })
	case '{':
		return eachMember(b, j, func(k []byte, x int) (int, error) {
			switch {
			case keyIs(k, "text"), keyIs(k, "content"):
				return p.content(x, depth+1)
			case keyIs(k, "type"):
				if x < len(b) && b[x] == '"' {
					end, _, err := scanString(b, x, nil)
					if err == nil {
						if t := string(b[x:end]); t == `"image_url"` || t == `"image"` || t == `"input_image"` {
							p.r.Images++
						}
					}
					return end, err
				}
			case keyIs(k, "input"), keyIs(k, "arguments"):
				return p.raw(x, depth+1)
			}
			return skipValue(b, x, depth+1)
		})
	}
	return skipValue(b, j, depth)
}

// raw counts a whole JSON value (tool definitions, tool calls) as prompt text: the
// model sees it serialized.
func (p *parser) raw(j, depth int) (int, error) {
	end, err := skipValue(p.b, j, depth)
	if err != nil {
		return end, err
	}
	var c counts
	for _, ch := range p.b[j:end] {
		switch asciiClass[ch] {
		case 1:
			c.alnum++
		case 2:
			c.space++
		case 3:
			if ch == '\t' || ch == '\n' || ch == '\r' {
				c.ws++
			} else if ch >= 0xC0 { // a rune's first byte; continuation bytes are skipped
				switch {
				case ch >= 0xF0:
					c.r4++
				case ch >= 0xE0:
					c.r3++
				case ch < 0xCA: // U+0080..U+027F
					c.latin++
				default:
					c.r2++
				}
			} else if ch < 0x80 {
				c.punct++
			}
		default:
			c.punct++
		}
	}
	p.r.text.add(c)
	return end, nil
}

// prompt reads a completions prompt or an embeddings input: a string, an array of
// strings, an array of token ids, or an array of arrays of token ids.
func (p *parser) prompt(j int) (int, error) {
	b := p.b
	if j >= len(b) {
		return j, errSyntax
	}
	switch b[j] {
	case '"':
		p.r.Messages++
		return p.text(j)
	case 'n':
		return literal(b, j, "null")
	case '[':
		return eachElement(b, j, func(v int) (int, error) {
			switch {
			case b[v] == '"':
				p.r.Messages++
				return p.text(v)
			case b[v] == '[':
				p.r.Messages++
				return eachElement(b, v, func(x int) (int, error) {
					_, next, ok, err := scanInt(b, x)
					if err == nil && !ok {
						err = invalid("prompt")
					}
					p.r.InputTokens++
					return next, err
				})
			case b[v] == '-' || b[v] >= '0' && b[v] <= '9':
				_, next, ok, err := scanInt(b, v)
				if err == nil && !ok {
					err = invalid("prompt")
				}
				p.r.InputTokens++
				return next, err
			}
			return v, invalid("prompt")
		})
	}
	return j, invalid("prompt")
}
