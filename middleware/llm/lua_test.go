package llm

import (
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luahttp"
)

// A Lua on_request decides the context guard's question itself: it sees the tokens a
// request may take of its model's window (luahttp.WithTokens(ContextTokens)) and sends
// large ones to a larger model, which the guard then accepts.
const guardScript = `
-- Requests that may need more than 150 tokens of context go to the large model;
-- tenant "blocked" is turned away.
function on_request(req)
  if req.tenant == "blocked" then
    return { status = 429, retry_after = 5, body = "over budget" }
  end
  if req.model == "small" and (req.tokens or 0) > 150 then
    return { model = "large", headers = { ["X-Lua-Routed"] = "large" } }
  end
end
`

func TestLuaDecidesContextGuard(t *testing.T) {
	rt, err := luabind.New(luabind.FromString("guard.lua", guardScript))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	models, _ := NewModels(Model{Name: "small", ContextWindow: 200}, Model{Name: "large", ContextWindow: 10000})
	rg := newRig(t, Config{Guard: GuardRefuse}, WithModels(models), WithHook(luahttp.Hook(rt, luahttp.WithTokens(ContextTokens))))

	resp, b := rg.post(t, "/v1/chat/completions", `{"model":"small","max_tokens":180,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Lua-Routed") != "large" || !strings.Contains(string(rg.up.body()), `"model":"large"`) {
		t.Errorf("large request: status %d %s, upstream got %s", resp.StatusCode, b, rg.up.body())
	}
	resp, _ = rg.post(t, "/v1/chat/completions", `{"model":"small","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Lua-Routed") != "" || !strings.Contains(string(rg.up.body()), `"model":"small"`) {
		t.Errorf("small request: status %d, upstream got %s", resp.StatusCode, rg.up.body())
	}
	resp, b = rg.post(t, "/v1/chat/completions", `{"model":"small","messages":[{"role":"user","content":"hi"}]}`, "X-Tenant-ID", "blocked")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "5" || !strings.Contains(string(b), "over budget") {
		t.Errorf("blocked: status %d %s", resp.StatusCode, b)
	}
}
