package llm

import "net/http"

// DefaultPromptPrefixBytes is how much of a prompt [PromptPrefix] reads when given 0:
// what the balancer's Scoring algorithm hashes by default (128 blocks of 64 bytes).
const DefaultPromptPrefixBytes = 8 << 10

// PromptPrefix returns the leading maxBytes of the prompt as the body spells it: from
// the first prompt text (a system prompt, the first message's content, a completions
// prompt) to the end of the last, JSON quotes, escapes and the structure between
// messages included, cut at maxBytes. Equal prompts spelled alike give equal
// prefixes, which is all prefix affinity needs. It is a slice of the body and must not
// be modified; nil when the request has no prompt text (token ids only).
func (r *Request) PromptPrefix(maxBytes int) []byte {
	if len(r.spans) == 0 || maxBytes <= 0 {
		return nil
	}
	start, end := r.spans[0][0], r.spans[len(r.spans)-1][1]
	end = min(end, start+maxBytes)
	return r.body[start:end:end]
}

// PromptPrefix returns a function that reads the prompt prefix of a request behind
// the gateway (see [Request.PromptPrefix]), at most maxBytes (0 means
// [DefaultPromptPrefixBytes]), for the balancer proxy's WithPrompt option, whose
// Scoring algorithm routes requests that share a prefix to the backend that served it.
// The function copies the prefix (one allocation of at most maxBytes, as the body
// may be rewritten or released while the string lives) and returns "" for a request
// the gateway did not read.
func PromptPrefix(maxBytes int) func(*http.Request) string {
	if maxBytes <= 0 {
		maxBytes = DefaultPromptPrefixBytes
	}
	return func(hr *http.Request) string {
		q, ok := FromRequest(hr)
		if !ok {
			return ""
		}
		return string(q.PromptPrefix(maxBytes))
	}
}
