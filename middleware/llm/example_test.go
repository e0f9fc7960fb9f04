package llm_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware/llm"
)

// A gateway in front of an upstream model server: the request's model and estimate
// are read before the upstream is called, and the usage it reports is recorded.
func Example() {
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, _ := llm.FromRequest(r)
		fmt.Println("model:", q.Model, "tenant:", q.Tenant, "estimate > 0:", q.PromptTokens > 0)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"content":"Hi!"}}],"usage":{"prompt_tokens":21,"completion_tokens":3}}`)
	})
	reg, _ := metrics.NewRegistry()
	models, _ := llm.ParseModels([]byte(`{"models":[{"name":"gpt-4o","context_window":128000,"input_price":2.5e-6,"output_price":1e-5}]}`))
	gw, _ := llm.New(llm.Config{}, llm.WithRegistry(reg), llm.WithModels(models))
	h := gw.Wrap(upstream)

	req := httptest.NewRequest("POST", "/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi."}],"user":"acme"}`))
	h.ServeHTTP(httptest.NewRecorder(), req)

	in, _ := reg.Lookup(llm.ScopeInputTokens, "gpt-4o")
	out, _ := reg.Lookup(llm.ScopeTenantOutputTokens, "acme")
	cost, _ := reg.Lookup(llm.ScopeCost, "gpt-4o")
	fmt.Println("input tokens:", in.Snapshot(0).Value, "acme's output tokens:", out.Snapshot(0).Value)
	fmt.Printf("cost: %.7f\n", cost.Snapshot(0).Value)
	// Output:
	// model: gpt-4o tenant: acme estimate > 0: true
	// input tokens: 21 acme's output tokens: 3
	// cost: 0.0000825
}
