package llm

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// upstream is a model server for the tests, served over real HTTP by httptest: it
// answers the four endpoints in OpenAI's and Anthropic's shapes, streamed or not,
// with the usage it is told to report, and keeps the last body it received.
type upstream struct {
	mu       sync.Mutex
	lastBody []byte
	in, out  int64 // the usage to report
	noUsage  bool  // report none
	lie      string
	chunks   int           // content events of a stream
	gate     chan struct{} // when set, a stream waits on it after its first event
	breakAt  int           // when > 0, a stream ends (connection dropped) after this many events
	status   int           // when set, answer with this status
	// cancelable makes a stream's wait on gate end when the request's context does.
	cancelable bool
	// holds maps an X-Test-Hold id to a channel the upstream closes when it holds
	// that request, before answering, until the client goes away.
	holds sync.Map
}

func (u *upstream) body() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastBody
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.lastBody = b
	u.mu.Unlock()
	if id := r.Header.Get("X-Test-Hold"); id != "" {
		if ch, ok := u.holds.Load(id); ok {
			close(ch.(chan struct{}))
		}
		<-r.Context().Done()
		return
	}
	if u.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(u.status)
		io.WriteString(w, `{"error":{"message":"upstream says no","type":"server_error"}}`)
		return
	}
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	json.Unmarshal(b, &req)
	ep := EndpointOf(r.URL.Path)
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, u.in, u.out, u.in+u.out)
	if ep == EndpointMessages {
		usage = fmt.Sprintf(`{"input_tokens":%d,"output_tokens":%d}`, u.in, u.out)
	}
	if u.lie != "" {
		usage = u.lie
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		us := `,"usage":` + usage
		if u.noUsage {
			us = ""
		}
		switch ep {
		case EndpointMessages:
			fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"Hello there, friend."}],"stop_reason":"end_turn","stop_sequence":null%s}`, req.Model, us)
		case EndpointEmbeddings:
			fmt.Fprintf(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":%q%s}`, req.Model, strings.Replace(us, `"completion_tokens":0,`, ``, 1))
		case EndpointCompletions:
			fmt.Fprintf(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":%q,"choices":[{"text":"Hello there, friend.","index":0,"finish_reason":"stop","logprobs":null}]%s}`, req.Model, us)
		default:
			fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}]%s}`, req.Model, us)
		}
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	n := max(u.chunks, 1)
	send := func(i int, s string) bool {
		io.WriteString(w, s)
		fl.Flush()
		if i == 0 && u.gate != nil {
			if u.cancelable {
				select {
				case <-u.gate:
				case <-r.Context().Done():
					return false
				}
			} else {
				<-u.gate
			}
		}
		return !(u.breakAt > 0 && i+1 >= u.breakAt)
	}
	if ep == EndpointMessages {
		start := fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":1}}}`, req.Model, u.in)
		if u.noUsage {
			start = fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null}}`, req.Model)
		}
		io.WriteString(w, "event: message_start\ndata: "+start+"\n\n")
		io.WriteString(w, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
		for i := 0; i < n; i++ {
			if !send(i, fmt.Sprintf("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok%d \"}}\n\n", i)) {
				panic(http.ErrAbortHandler)
			}
		}
		io.WriteString(w, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n")
		delta := `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":` + fmt.Sprintf(`{"output_tokens":%d}`, u.out) + `}`
		if u.lie != "" {
			delta = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":` + u.lie + `}`
		}
		if !u.noUsage {
			io.WriteString(w, "event: message_delta\ndata: "+delta+"\n\n")
		}
		io.WriteString(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
		return
	}
	for i := 0; i < n; i++ {
		ev := fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}],"usage":null}`+"\n\n", req.Model, i)
		if ep == EndpointCompletions {
			ev = fmt.Sprintf(`data: {"id":"cmpl-1","object":"text_completion","created":1,"model":%q,"choices":[{"index":0,"text":"tok%d ","finish_reason":null,"logprobs":null}]}`+"\n\n", req.Model, i)
		}
		if !send(i, ev) {
			panic(http.ErrAbortHandler)
		}
	}
	io.WriteString(w, fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n", req.Model))
	if !u.noUsage {
		io.WriteString(w, fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":%q,"choices":[],"usage":%s}`+"\n\n", req.Model, usage))
	}
	io.WriteString(w, "data: [DONE]\n\n")
}
