package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// modelSpec is a simulated model: how fast one replica runs it, how much it holds at
// once, how long a replica takes to start, and what its tokens cost.
type modelSpec struct {
	name string
	// prefillTPS is the prompt tokens a replica reads per second (prefill is
	// compute-bound and shared by the batch); decodeTPS the tokens one sequence
	// generates per second when it runs alone. Zero means instant (benchmarks).
	prefillTPS, decodeTPS float64
	// batch is the sequences a replica runs at once; queue the requests it holds
	// beyond them before answering 429.
	batch, queue int
	// kvTokens is a replica's KV cache, in tokens: a sequence holds its prompt and
	// its output allowance while it runs, so a few long prompts fill it before the
	// batch does.
	kvTokens  int
	coldStart time.Duration
	// inputPrice and outputPrice are dollars per token.
	inputPrice, outputPrice float64
	// cheaper is the model llm_cost sends this one's economy lane to; fallback the
	// chain a failing request moves down.
	cheaper  string
	fallback []string
	min, max int
}

// chatRequest is what the simulated server reads of an OpenAI chat request.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           int  `json:"max_tokens"`
	MaxCompletionTokens int  `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// modelServer is one replica's engine: a batch of running sequences over a KV cache,
// and a FIFO queue in front of it. It is safe for concurrent use.
type modelServer struct {
	spec *modelSpec
	id   string

	mu      sync.Mutex
	running int
	kvUsed  int
	waiting []*waiter
}

type waiter struct {
	need  int
	ready chan struct{}
}

// promptTokens is the simulated tokenizer: about four bytes a token, plus four per
// message for its framing, as OpenAI's tokenizers count.
func promptTokens(req *chatRequest) int {
	n := 0
	for _, m := range req.Messages {
		n += 4 + (len(m.Content)+3)/4
	}
	return max(n, 1)
}

// acquire takes a batch slot and KV room for need tokens, waiting in the queue; false
// when the queue is full (429) or ctx ends.
func (s *modelServer) acquire(ctx context.Context, need int) bool {
	need = min(need, s.spec.kvTokens) // a prompt larger than the cache runs alone
	s.mu.Lock()
	if len(s.waiting) == 0 && s.running < s.spec.batch && s.kvUsed+need <= s.spec.kvTokens {
		s.running++
		s.kvUsed += need
		s.mu.Unlock()
		return true
	}
	if len(s.waiting) >= s.spec.queue {
		s.mu.Unlock()
		return false
	}
	w := &waiter{need: need, ready: make(chan struct{})}
	s.waiting = append(s.waiting, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.waiting {
			if x == w {
				s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
				return false
			}
		}
		// Admitted as ctx ended: give the slot back.
		s.releaseLocked(need)
		return false
	}
}

func (s *modelServer) release(need int) {
	s.mu.Lock()
	s.releaseLocked(min(need, s.spec.kvTokens))
	s.mu.Unlock()
}

func (s *modelServer) releaseLocked(need int) {
	s.running--
	s.kvUsed -= need
	for len(s.waiting) > 0 {
		w := s.waiting[0]
		if s.running >= s.spec.batch || s.kvUsed+w.need > s.spec.kvTokens {
			return
		}
		s.waiting = s.waiting[1:]
		s.running++
		s.kvUsed += w.need
		close(w.ready)
	}
}

// perToken is the time between two output tokens of one sequence: the batch shares the
// replica, so a full batch decodes each sequence at half the speed of one alone.
func (s *modelServer) perToken() time.Duration {
	if s.spec.decodeTPS == 0 {
		return 0
	}
	s.mu.Lock()
	load := float64(s.running-1) / float64(s.spec.batch)
	s.mu.Unlock()
	return time.Duration(float64(time.Second) / s.spec.decodeTPS * (1 + max(load, 0)))
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func openAIError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":%q}}`+"\n", msg, typ)
}

// ServeHTTP serves POST /v1/chat/completions, streamed or not, with usage.
func (s *modelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var req chatRequest
	if err != nil || json.Unmarshal(body, &req) != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "malformed JSON")
		return
	}
	in := promptTokens(&req)
	out := req.MaxCompletionTokens
	if out == 0 {
		out = req.MaxTokens
	}
	if out <= 0 {
		out = 64
	}
	ctx := r.Context()
	if !s.acquire(ctx, in+out) {
		if ctx.Err() == nil {
			w.Header().Set("Retry-After", "1")
			openAIError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "the model is overloaded")
		}
		return
	}
	defer s.release(in + out)
	if s.spec.prefillTPS > 0 && !sleep(ctx, time.Duration(float64(in)/s.spec.prefillTPS*float64(time.Second))) {
		return
	}
	id := "chatcmpl-" + s.id
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, in, out, in+out)
	if !req.Stream {
		if !sleep(ctx, time.Duration(out)*s.perToken()) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"object":"chat.completion","created":%d,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":%s}`+"\n",
			id, time.Now().Unix(), s.spec.name, strings.Repeat("tok ", out), usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	chunk := func(delta, finish string) {
		fin := "null"
		if finish != "" {
			fin = strconv.Quote(finish)
		}
		fmt.Fprintf(w, `data: {"id":%q,"object":"chat.completion.chunk","model":%q,"choices":[{"index":0,"delta":{"content":%q},"finish_reason":%s}]}`+"\n\n",
			id, s.spec.name, delta, fin)
		if fl != nil {
			fl.Flush()
		}
	}
	const perChunk = 4 // tokens per event, as servers batch them
	for sent := 0; sent < out; sent += perChunk {
		n := min(perChunk, out-sent)
		if !sleep(ctx, time.Duration(n)*s.perToken()) {
			return
		}
		chunk(strings.Repeat("tok ", n), "")
	}
	chunk("", "stop")
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		fmt.Fprintf(w, `data: {"id":%q,"object":"chat.completion.chunk","model":%q,"choices":[],"usage":%s}`+"\n\n", id, s.spec.name, usage)
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

// load reports the replica's state: batch slots and KV cache in use, queue length.
func (s *modelServer) load() (running, kvUsed, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running, s.kvUsed, len(s.waiting)
}
