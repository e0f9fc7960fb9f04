package llm

import (
	"encoding/json"
	"net/http"
)

// apiError is a rejection the gateway answers itself: a status and fixed texts, in
// OpenAI's error shape ({"error": {"message", "type", "param", "code"}}) and, for
// /v1/messages, Anthropic's ({"type": "error", "error": {"type", "message"}}), so
// that either SDK turns it into its typed error. The bodies are built once.
type apiError struct {
	status            int
	openai, anthropic []byte
}

func newAPIError(status int, typ, code, param, message string) *apiError {
	o := map[string]any{"error": map[string]any{"message": message, "type": typ, "param": nilIfEmpty(param), "code": nilIfEmpty(code)}}
	at := typ
	switch status {
	case http.StatusTooManyRequests:
		at = "rate_limit_error"
	case http.StatusRequestEntityTooLarge:
		at = "request_too_large"
	case http.StatusNotFound:
		at = "not_found_error"
	case http.StatusServiceUnavailable:
		at = "overloaded_error"
	}
	a := map[string]any{"type": "error", "error": map[string]any{"type": at, "message": message}}
	ob, _ := json.Marshal(o)
	ab, _ := json.Marshal(a)
	return &apiError{status: status, openai: append(ob, '\n'), anthropic: append(ab, '\n')}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// The fixed rejections. Their texts never carry a request's data.
var (
	errTooLarge = newAPIError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "",
		"The request body is larger than this gateway accepts.")
	errUnreadable = newAPIError(http.StatusBadRequest, "invalid_request_error", "unreadable_body", "",
		"The request body could not be read.")
	errMalformedBody = newAPIError(http.StatusBadRequest, "invalid_request_error", "invalid_json", "",
		"The request body is not valid JSON (or not valid UTF-8).")
	errMissingModel = newAPIError(http.StatusBadRequest, "invalid_request_error", "missing_model", "model",
		"You must provide a model parameter.")
	errUnknownModel = newAPIError(http.StatusNotFound, "invalid_request_error", "model_not_found", "model",
		"The model does not exist or is not served by this gateway.")
	errEmptyPrompt = newAPIError(http.StatusBadRequest, "invalid_request_error", "empty_messages", "messages",
		"The request must contain at least one message (or a prompt or input).")
	errWrongType = newAPIError(http.StatusBadRequest, "invalid_request_error", "invalid_type", "",
		"A request field has the wrong type.")
	errContextLength = newAPIError(http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "messages",
		"The prompt and the requested output exceed the model's context window.")
	errTokenRate = newAPIError(http.StatusTooManyRequests, "tokens", "rate_limit_exceeded", "",
		"Rate limit reached for tokens per minute. Retry after the time in the Retry-After header.")
	errTokenQuota = newAPIError(http.StatusTooManyRequests, "insufficient_quota", "insufficient_quota", "",
		"The daily token quota is used up. Retry after the time in the Retry-After header.")
	errTooBigForBudget = newAPIError(http.StatusTooManyRequests, "tokens", "rate_limit_exceeded", "",
		"The request needs more tokens than the per-minute token limit allows at once.")
)

// hookError builds the rejection of a hook (a Lua on_request), whose body text is the
// operator's; "" means the status text.
func hookError(status int, body string) *apiError {
	if status < 400 || status > 599 {
		status = http.StatusServiceUnavailable
	}
	if body == "" {
		body = http.StatusText(status)
	}
	typ := "invalid_request_error"
	if status == http.StatusTooManyRequests {
		typ = "rate_limit_exceeded"
	} else if status >= 500 {
		typ = "server_error"
	}
	return newAPIError(status, typ, "rejected", "", body)
}

func (e *apiError) write(w http.ResponseWriter, ep Endpoint) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	if ep == EndpointMessages {
		w.Write(e.anthropic)
		return
	}
	w.Write(e.openai)
}
