package llm

import "bytes"

// Usage is what a response says a request used.
type Usage struct {
	// InputTokens and OutputTokens are the prompt's and the completion's tokens
	// (OpenAI's prompt_tokens and completion_tokens, Anthropic's input_tokens, cache
	// reads and writes included, and output_tokens).
	InputTokens, OutputTokens int64
	// Reported says the upstream sent a usage object; without one, the gateway
	// settles the prompt's estimate and, for streams, the content chunks counted.
	Reported bool
	// Chunks counts a stream's events that carried content (about one token each).
	Chunks int64
	// OutputText counts the characters of a non-streamed response's content, from
	// which the output is estimated when no usage is reported.
	outputText counts
	// Lied says a reported count was negative or absurd; it is not taken.
	Lied bool
	// inOK and outOK say which counts were reported and believed.
	inOK, outOK bool
}

// maxUsage bounds a believable reported count.
const maxUsage = 1 << 31

// usageScanner reads usage from a response as it passes, without holding it up: a
// JSON body is kept (up to a cap) to be read at its end; a server-sent event stream is
// read line by line as it goes, with only a partial last line kept between writes.
type usageScanner struct {
	mode    uint8 // scanNone, scanJSON, scanSSE
	buf     []byte
	limit   int
	over    bool // the JSON body outgrew limit, or an SSE line did
	u       Usage
	content bool // the last document read carried content
}

const (
	scanNone = iota
	scanJSON
	scanSSE
)

func (s *usageScanner) reset(mode uint8, limit int) {
	buf := s.buf[:0]
	*s = usageScanner{mode: mode, buf: buf, limit: limit}
}

// write feeds response bytes; for a stream it reports whether they completed an event
// that carried content (the stream's first token, for the time to first token).
func (s *usageScanner) write(p []byte) (content bool) {
	switch s.mode {
	case scanJSON:
		if !s.over {
			if len(s.buf)+len(p) > s.limit {
				s.over = true
				s.buf = s.buf[:0]
			} else {
				s.buf = append(s.buf, p...)
			}
		}
	case scanSSE:
		for len(p) > 0 {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 {
				if !s.over && len(s.buf)+len(p) <= s.limit {
					s.buf = append(s.buf, p...)
				} else {
					s.over = true
				}
				return content
			}
			line := p[:nl]
			if len(s.buf) > 0 || s.over {
				if !s.over && len(s.buf)+len(line) <= s.limit {
					s.buf = append(s.buf, line...)
					line = s.buf
				} else {
					line = nil
				}
			}
			if line != nil && s.line(line) {
				content = true
			}
			s.buf, s.over = s.buf[:0], false
			p = p[nl+1:]
		}
	}
	return content
}

// line reads one SSE line: a data line holds one JSON document.
func (s *usageScanner) line(l []byte) bool {
	l = bytes.TrimSuffix(l, []byte{'\r'})
	d, ok := bytes.CutPrefix(l, []byte("data:"))
	if !ok {
		return false
	}
	d = bytes.TrimLeft(d, " ")
	if len(d) == 0 || d[0] != '{' {
		return false // [DONE], or not JSON
	}
	s.content = false
	s.doc(d, true)
	if s.content {
		s.u.Chunks++
	}
	return s.content
}

// finish reads a kept JSON body and returns the usage.
func (s *usageScanner) finish() Usage {
	if s.mode == scanJSON && !s.over {
		s.doc(s.buf, false)
	}
	return s.u
}

// doc reads one JSON document of a response (a whole body or a stream's event) for
// usage and content; a document that does not parse adds nothing.
func (s *usageScanner) doc(b []byte, stream bool) {
	i := skipWS(b, 0)
	_, _ = eachMember(b, i, func(key []byte, j int) (int, error) {
		switch {
		case keyIs(key, "usage"):
			return s.usage(b, j)
		case keyIs(key, "message"): // Anthropic's message_start
			if j < len(b) && b[j] == '{' {
				return eachMember(b, j, func(k []byte, x int) (int, error) {
					if keyIs(k, "usage") {
						return s.usage(b, x)
					}
					return skipValue(b, x, 3)
				})
			}
		case keyIs(key, "choices"):
			if j < len(b) && b[j] == '[' {
				return eachElement(b, j, func(v int) (int, error) { return s.choice(b, v) })
			}
		case keyIs(key, "delta"): // Anthropic's content_block_delta
			return s.text(b, j, 2)
		case keyIs(key, "content"): // Anthropic's message, not streamed
			if !stream {
				return s.text(b, j, 2)
			}
		}
		return skipValue(b, j, 1)
	})
}

func (s *usageScanner) choice(b []byte, j int) (int, error) {
	if j >= len(b) || b[j] != '{' {
		return skipValue(b, j, 2)
	}
	return eachMember(b, j, func(k []byte, x int) (int, error) {
		if keyIs(k, "message") || keyIs(k, "delta") || keyIs(k, "text") {
			return s.text(b, x, 3)
		}
		return skipValue(b, x, 3)
	})
}

// text counts the content in a value: a string, or the "text", "content",
// "partial_json", "arguments" and "refusal" strings inside objects and arrays.
func (s *usageScanner) text(b []byte, j, depth int) (int, error) {
	if depth > maxDepth || j >= len(b) {
		return j, errDepth
	}
	switch b[j] {
	case '"':
		var c counts
		end, _, err := scanString(b, j, &c)
		if err == nil && c.bytes() > 0 {
			s.content = true
			s.u.outputText.add(c)
		}
		return end, err
	case '[':
		return eachElement(b, j, func(v int) (int, error) { return s.text(b, v, depth+1) })
	case '{':
		return eachMember(b, j, func(k []byte, x int) (int, error) {
			switch {
			case keyIs(k, "text"), keyIs(k, "content"), keyIs(k, "partial_json"), keyIs(k, "arguments"),
				keyIs(k, "refusal"), keyIs(k, "tool_calls"), keyIs(k, "function"), keyIs(k, "function_call"):
				return s.text(b, x, depth+1)
			}
			return skipValue(b, x, depth+1)
		})
	}
	return skipValue(b, j, depth)
}

// usage reads a usage object. Anthropic streams send input tokens in message_start
// and a running output count in message_delta, so a later field replaces an earlier
// one rather than adding to it; the cache figures add to the input.
func (s *usageScanner) usage(b []byte, j int) (int, error) {
	if j >= len(b) || b[j] != '{' {
		return skipValue(b, j, 2)
	}
	var in, out, cache int64 = -1, -1, 0
	end, err := eachMember(b, j, func(k []byte, x int) (int, error) {
		var dst *int64
		switch {
		case keyIs(k, "prompt_tokens"), keyIs(k, "input_tokens"):
			dst = &in
		case keyIs(k, "completion_tokens"), keyIs(k, "output_tokens"):
			dst = &out
		case keyIs(k, "cache_creation_input_tokens"), keyIs(k, "cache_read_input_tokens"):
			var v int64
			next, ok := s.count(b, x, &v)
			if ok {
				cache += v
			}
			return next, nil
		default:
			return skipValue(b, x, 3)
		}
		next, _ := s.count(b, x, dst)
		return next, nil
	})
	if err != nil {
		return end, err
	}
	if in >= 0 {
		s.u.InputTokens = in + cache
		s.u.Reported, s.u.inOK = true, true
	}
	if out >= 0 {
		s.u.OutputTokens = out
		s.u.Reported, s.u.outOK = true, true
	}
	return end, nil
}

// count reads a token count; a negative, fractional or absurd one marks the usage as
// a lie and is not taken.
func (s *usageScanner) count(b []byte, x int, dst *int64) (int, bool) {
	if x < len(b) && b[x] == 'n' {
		next, _ := literal(b, x, "null")
		return next, false
	}
	if x < len(b) && b[x] == '-' {
		next, err := scanNumber(b, x)
		if err != nil {
			next = len(b)
		}
		s.u.Lied = true
		return next, false
	}
	v, next, ok, err := scanInt(b, x)
	if err != nil {
		next, _ = skipValue(b, x, 3)
		s.u.Lied = true
		return next, false
	}
	if !ok || v > maxUsage {
		s.u.Lied = true
		return next, false
	}
	*dst = v
	return next, true
}
