package llm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// parsed is the part of a Request a test compares.
type parsed struct {
	Model                  string
	Stream, IncludeUsage   bool
	MaxOutputTokens        int64
	User                   string
	Messages, Images       int
	InputTokens, TextBytes int64
	Text                   string
}

func summary(q *Request) parsed {
	return parsed{q.Model, q.Stream, q.IncludeUsage, q.MaxOutputTokens, q.User, q.Messages, q.Images, q.InputTokens, q.TextBytes, string(q.AppendText(nil))}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		ep   Endpoint
		body string
		want parsed
		err  error
	}{
		{name: "chat", ep: EndpointChatCompletions,
			body: `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \u00e9\n"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":64,"user":"acme"}`,
			want: parsed{Model: "gpt-4o", Stream: true, IncludeUsage: true, MaxOutputTokens: 64, User: "acme", Messages: 2, TextBytes: 9 + 6, Text: "Be brief.\nHi é\n\n"}},
		{name: "max_completion_tokens wins", ep: EndpointChatCompletions,
			body: `{"max_tokens":10,"max_completion_tokens":20,"model":"m","messages":[{"role":"user","content":"x"}]}`,
			want: parsed{Model: "m", MaxOutputTokens: 20, Messages: 1, TextBytes: 1, Text: "x\n"}},
		{name: "content parts and images", ep: EndpointChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}`,
			want: parsed{Model: "m", Messages: 1, Images: 1, TextBytes: 4, Text: "look\n"}},
		{name: "tools count as text", ep: EndpointChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"x":1}]}`,
			want: parsed{Model: "m", Messages: 1, TextBytes: 1 + 9, Text: "a\n"}},
		{name: "anthropic", ep: EndpointMessages,
			body: `{"model":"claude","max_tokens":1024,"system":[{"type":"text","text":"sys"}],"metadata":{"user_id":"u1"},"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"ok"}]}]}]}`,
			want: parsed{Model: "claude", MaxOutputTokens: 1024, User: "u1", Messages: 2, TextBytes: 5, Text: "sys\nok\n"}},
		{name: "completions prompt list", ep: EndpointCompletions,
			body: `{"model":"m","prompt":["ab","cd"],"max_tokens":5}`,
			want: parsed{Model: "m", MaxOutputTokens: 5, Messages: 2, TextBytes: 4, Text: "ab\ncd\n"}},
		{name: "embeddings token ids", ep: EndpointEmbeddings,
			body: `{"model":"e","input":[[1,2,3],[4]]}`,
			want: parsed{Model: "e", Messages: 2, InputTokens: 4}},
		{name: "escaped key", ep: EndpointChatCompletions,
			body: `{"mod\u0065l":"m","messages":[{"role":"user","content":"x"}]}`,
			want: parsed{Model: "m", Messages: 1, TextBytes: 1, Text: "x\n"}},
		{name: "null fields", ep: EndpointChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":null,"max_tokens":null,"user":null,"stream_options":null}`,
			want: parsed{Model: "m", Messages: 1, TextBytes: 1, Text: "x\n"}},
		{name: "malformed", ep: EndpointChatCompletions, body: `{"model":"m",`, err: ErrMalformed},
		{name: "trailing garbage", ep: EndpointChatCompletions, body: `{"model":"m","messages":[{"content":"x"}]} x`, err: ErrMalformed},
		{name: "not an object", ep: EndpointChatCompletions, body: `[1]`, err: ErrMalformed},
		{name: "empty body", ep: EndpointChatCompletions, body: ``, err: ErrMalformed},
		{name: "bad utf-8", ep: EndpointChatCompletions, body: "{\"model\":\"m\",\"messages\":[{\"content\":\"\xff\"}]}", err: ErrMalformed},
		{name: "control char", ep: EndpointChatCompletions, body: "{\"model\":\"m\",\"messages\":[{\"content\":\"a\x01\"}]}", err: ErrMalformed},
		{name: "deep", ep: EndpointChatCompletions, body: `{"model":"m","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, err: ErrMalformed},
		{name: "no model", ep: EndpointChatCompletions, body: `{"messages":[{"content":"x"}]}`, err: ErrNoModel},
		{name: "empty model", ep: EndpointChatCompletions, body: `{"model":"","messages":[{"content":"x"}]}`, err: ErrNoModel},
		{name: "model not a string", ep: EndpointChatCompletions, body: `{"model":3,"messages":[{"content":"x"}]}`, err: ErrInvalidField},
		{name: "empty messages", ep: EndpointChatCompletions, body: `{"model":"m","messages":[]}`, err: ErrNoPrompt},
		{name: "messages not an array", ep: EndpointChatCompletions, body: `{"model":"m","messages":"x"}`, err: ErrInvalidField},
		{name: "stream not a bool", ep: EndpointChatCompletions, body: `{"model":"m","messages":[{"content":"x"}],"stream":"yes"}`, err: ErrInvalidField},
		{name: "negative max_tokens", ep: EndpointChatCompletions, body: `{"model":"m","messages":[{"content":"x"}],"max_tokens":-1}`, err: ErrInvalidField},
		{name: "fractional max_tokens", ep: EndpointChatCompletions, body: `{"model":"m","messages":[{"content":"x"}],"max_tokens":1.5}`, err: ErrInvalidField},
		{name: "huge max_tokens", ep: EndpointChatCompletions, body: `{"model":"m","messages":[{"content":"x"}],"max_tokens":1e300}`, err: ErrInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Request
			err := Parse([]byte(tt.body), tt.ep, &q)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, summary(&q)); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]Endpoint{
		"/v1/chat/completions": EndpointChatCompletions, "/openai/v1/chat/completions": EndpointChatCompletions,
		"/v1/completions": EndpointCompletions, "/v1/embeddings": EndpointEmbeddings, "/v1/messages": EndpointMessages,
		"/v1/models": EndpointUnknown, "/": EndpointUnknown,
	} {
		if got := EndpointOf(path); got != want {
			t.Errorf("EndpointOf(%q) = %v, want %v", path, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hi \u00e9\ud83d\ude00"}],"stream":true,"max_tokens":64,"user":"acme"}`))
	f.Add([]byte(`{"model":"c","system":[{"text":"s"}],"messages":[{"content":[{"type":"image","source":{}},{"text":"t"}]}]}`))
	f.Add([]byte(`{"model":"e","input":[[1,2],[3]],"prompt":["a"],"tools":[{"a":[1.5e3,-2,true,null]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, ep := range []Endpoint{EndpointChatCompletions, EndpointMessages, EndpointEmbeddings} {
			var q Request
			err := Parse(body, ep, &q)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoModel) && !errors.Is(err, ErrNoPrompt) && !errors.Is(err, ErrInvalidField) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			if q.TextBytes < 0 || q.Messages < 0 || q.InputTokens < 0 || q.MaxOutputTokens < 0 {
				t.Fatalf("negative count in %+v", q)
			}
			_ = q.AppendText(nil)
		}
	})
}

// naiveCounts counts a decoded string's classes one rune at a time, the reference for
// scanString's word-at-a-time path.
func naiveCounts(s string) counts {
	var c counts
	for _, r := range s {
		switch {
		case r < 0x80 && asciiClass[r] == 1:
			c.alnum++
		case r == ' ':
			c.space++
		case r == '\t' || r == '\n' || r == '\r':
			c.ws++
		case r < 0x80:
			c.punct++
		default:
			c.rune(r)
		}
	}
	return c
}

func FuzzScanString(f *testing.F) {
	f.Add("Hello, world! The quick brown fox jumps over 13 lazy dogs.")
	f.Add("Привет, мир — 你好 안녕 😀 tab\tnew\nline \"quoted\" back\\slash \u0001")
	f.Fuzz(func(t *testing.T, s string) {
		enc, err := json.Marshal(s)
		if err != nil {
			t.Skip()
		}
		var c counts
		end, _, err := scanString(enc, 0, &c)
		if end2, _, err2 := scanString(enc, 0, nil); end2 != end || (err2 == nil) != (err == nil) {
			t.Fatalf("scanString(%q) without counts = %d, %v; with = %d, %v", enc, end2, err2, end, err)
		}
		if !utf8.ValidString(s) {
			return // json.Marshal replaced the invalid bytes; nothing to compare
		}
		if err != nil || end != len(enc) {
			t.Fatalf("scanString(%q) = %d, %v", enc, end, err)
		}
		if want := naiveCounts(s); c != want {
			t.Fatalf("counts of %q: %+v, want %+v", s, c, want)
		}
		if got := string(unquote(nil, enc)); got != s {
			t.Fatalf("unquote(%q) = %q", enc, got)
		}
	})
}
