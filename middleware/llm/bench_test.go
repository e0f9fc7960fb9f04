package llm

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
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

// BenchmarkParseEstimateBudget is the bound: parse, estimate and the budget
// check (a reservation from the tenant's and the (tenant, model) buckets, and its
// settlement) of a 2 KB chat request, the body already in its pooled buffer.
func BenchmarkParseEstimateBudget(b *testing.B) {
	models, _ := NewModels(Model{Name: "gpt-4o", ContextWindow: 128000})
	e, _ := NewEstimator(EstimatorConfig{})
	budgets, _ := NewBudgets(BudgetsConfig{}, nil)
	budgets.Set("acme", "", Budget{TokensPerMinute: 1 << 40})
	budgets.Set("acme", "gpt-4o", Budget{TokensPerMinute: 1 << 40, DailyTokens: 1 << 50})
	now := time.Now()
	var q Request
	b.SetBytes(int64(len(chat2KB)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parse(chat2KB, EndpointChatCompletions, &q, models.intern); err != nil {
			b.Fatal(err)
		}
		q.Tenant = q.User
		q.PromptTokens = e.Estimate(&q)
		res, err := budgets.Reserve(q.Tenant, q.Model, q.ContextTokens(), now)
		if err != nil {
			b.Fatal(err)
		}
		budgets.Settle(res, q.PromptTokens, now)
	}
}

// BenchmarkFloor is what reading the same 2 KB costs at the least, run beside the
// benchmarks above so that a loaded machine shows in both: counting one byte with the
// runtime's vector code (bytes.Count), and validating the JSON with encoding/json.
func BenchmarkFloor(b *testing.B) {
	b.Run("bytes.Count", func(b *testing.B) {
		b.SetBytes(int64(len(chat2KB)))
		for b.Loop() {
			bytes.Count(chat2KB, []byte{'"'})
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(chat2KB)))
		for b.Loop() {
			json.Valid(chat2KB)
		}
	})
}

// chatResponse is a short non-streamed chat completion with usage, as the demo's model
// servers answer.
var chatResponse = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1733600000,"model":"llama-8b","choices":[{"index":0,"message":{"role":"assistant","content":"tok tok tok tok tok tok tok tok "},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}` + "\n")

// BenchmarkUsageJSON is reading the usage of a short non-streamed response as the
// gateway does: kept as it passes, read at its end.
func BenchmarkUsageJSON(b *testing.B) {
	var s usageScanner
	b.SetBytes(int64(len(chatResponse)))
	b.ReportAllocs()
	for b.Loop() {
		s.reset(scanJSON, 1<<20)
		s.write(chatResponse)
		if u := s.finish(); u.InputTokens != 12 || u.OutputTokens != 8 {
			b.Fatalf("usage %+v", u)
		}
	}
}

// BenchmarkEstimatorObserve is the calibration step the gateway takes after each
// response that reports its prompt tokens, for a short chat request.
func BenchmarkEstimatorObserve(b *testing.B) {
	e, _ := NewEstimator(EstimatorConfig{})
	var q Request
	if err := parse([]byte(`{"model":"llama-8b","max_tokens":8,"messages":[{"role":"user","content":"Say hi."}]}`), EndpointChatCompletions, &q, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Observe(&q, 12) {
			b.Fatal("sample not used")
		}
	}
}
