package llm

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func scanAll(mode uint8, parts ...string) Usage {
	var s usageScanner
	s.reset(mode, 1<<20)
	for _, p := range parts {
		s.write([]byte(p))
	}
	return s.finish()
}

func TestUsageScanner(t *testing.T) {
	tests := []struct {
		name  string
		mode  uint8
		parts []string
		want  Usage
	}{
		{"openai json", scanJSON, []string{`{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,`, `"completion_tokens":3,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":0}}}`},
			Usage{InputTokens: 12, OutputTokens: 3, Reported: true, inOK: true, outOK: true, outputText: counts{alnum: 2}}},
		{"openai stream split mid-line", scanSSE, []string{"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"choi", "ces\":[{\"delta\":{\"content\":\"b\"}}]}\r\n\r\n", "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"},
			Usage{InputTokens: 5, OutputTokens: 2, Reported: true, inOK: true, outOK: true, Chunks: 2, outputText: counts{alnum: 2}}},
		{"anthropic stream", scanSSE, []string{"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n"},
			Usage{InputTokens: 25, OutputTokens: 9, Reported: true, inOK: true, outOK: true, Chunks: 1, outputText: counts{alnum: 2}}},
		{"no usage", scanSSE, []string{"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"},
			Usage{Chunks: 1, outputText: counts{alnum: 1}}},
		{"lies", scanJSON, []string{`{"usage":{"prompt_tokens":-1,"completion_tokens":1e40}}`}, Usage{Lied: true}},
		{"garbage", scanSSE, []string{"data: {not json\n\n: comment\n\nevent: x\n"}, Usage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanAll(tt.mode, tt.parts...)
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(Usage{}, counts{})); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// FuzzUsageScanner feeds a response in two pieces split anywhere: the scanner must not
// panic, must count nothing negative, and must read the same usage however the bytes
// were split.
func FuzzUsageScanner(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n"), 17, true)
	f.Add([]byte(`{"content":[{"type":"text","text":"x"}],"usage":{"input_tokens":3,"output_tokens":1}}`), 9, false)
	f.Fuzz(func(t *testing.T, b []byte, cut int, sse bool) {
		mode := uint8(scanJSON)
		if sse {
			mode = scanSSE
		}
		if cut < 0 || cut > len(b) {
			cut = len(b) / 2
		}
		whole := scanAll(mode, string(b))
		split := scanAll(mode, string(b[:cut]), string(b[cut:]))
		if whole != split {
			t.Fatalf("whole %+v, split at %d %+v", whole, cut, split)
		}
		if whole.InputTokens < 0 || whole.OutputTokens < 0 || whole.Chunks < 0 || whole.InputTokens > 2*maxUsage || whole.OutputTokens > maxUsage {
			t.Fatalf("bad usage %+v", whole)
		}
	})
}
