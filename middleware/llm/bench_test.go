package llm

import (
	"encoding/json"
	"strings"
	"testing"
)

// chat2KB is a chat request of about 2 KB: a system prompt and a user turn of English
// prose with a little code, as an assistant front end sends.
var chat2KB = func() []byte {
	user := strings.Repeat("The gateway reads the model and estimates the prompt before it routes the request; ", 22) +
		"func main() { fmt.Println(\"hello\") }\n"
	b, _ := json.Marshal(map[string]any{
		"model": "gpt-4o", "stream": true, "max_tokens": 256, "user": "acme",
		"messages": []map[string]string{{"role": "system", "content": "You are a helpful assistant. Answer briefly."}, {"role": "user", "content": user}},
	})
	return b
}()

// BenchmarkParseEstimate is the parse and the estimate of a 2 KB chat request, with
// the model interned from the table (as the gateway does).
func BenchmarkParseEstimate(b *testing.B) {
	models, _ := NewModels(Model{Name: "gpt-4o", ContextWindow: 128000})
	e, _ := NewEstimator(EstimatorConfig{})
	var q Request
	b.SetBytes(int64(len(chat2KB)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parse(chat2KB, EndpointChatCompletions, &q, models.intern); err != nil {
			b.Fatal(err)
		}
		q.PromptTokens = e.Estimate(&q)
	}
	if len(chat2KB) < 1900 || len(chat2KB) > 2200 {
		b.Fatalf("body is %d bytes, not about 2 KB", len(chat2KB))
	}
}
