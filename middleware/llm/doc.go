// Package llm makes an HTTP gateway understand the LLM API requests it passes: OpenAI's
// /v1/chat/completions, /v1/completions and /v1/embeddings and Anthropic's
// /v1/messages. It reads each request's model, stream flag, max output tokens, tenant
// and prompt text; estimates the prompt's tokens; guards models' context windows;
// reads the usage that plain and streamed (SSE) responses report; and records tokens,
// time to first token and time per output token into metric windows per model and per
// tenant, where Lua's m.scope (and, through the middleware, m.model) read them.
//
// It is a leaf package: it imports middleware and metrics, no provider SDK, and no
// core package imports it.
//
// # The request path
//
// A [Gateway] wraps the handler that calls the upstream (a reverse proxy, or a
// balancer's). For a POST to one of the four endpoints it reads the body once, up to
// [Config.MaxBodyBytes] (4 MiB by default; over it the answer is 413), parses it with
// a validating scanner that builds nothing ([Parse]), and gives it back to the
// upstream byte for byte, with the parse riding on the restored body so that
// [FromRequest], [Classifier], [PromptTokens] and [ContextTokens] find it without a
// context allocation. Its hook (a Lua on_request through luahttp) may reject the
// request or change its model or tenant; the context guard then refuses a request
// whose estimate plus max output tokens exceeds its model's window (400,
// context_length_exceeded) or sends it to the model's Overflow model, rewriting only
// the body's model field ([SetModel], which a fallback router uses too). Every
// rejection is an error body in OpenAI's shape (Anthropic's on /v1/messages) with a
// fixed text.
//
// The response passes through as it is written (a stream's events reach the client
// as the upstream flushes them); the gateway reads usage from it on the way: a JSON
// body's usage object at its end, a stream's final usage chunk (OpenAI with
// stream_options.include_usage) or message_start and message_delta events
// (Anthropic). Without usage it settles the prompt's estimate and, for the output,
// the content events it counted (streams) or an estimate of the content's text. A
// negative or absurd count is not believed, and no output is charged above the
// request's max tokens. A response that is not a success uses nothing.
//
// # Budgets
//
// [Budgets] hold token buckets (tokens per minute) and daily quotas per tenant and per
// (tenant, model); the gateway reserves a request's estimate before the upstream is
// called and settles it from the usage after, with a documented bound on what
// concurrent requests overspend (see [Budgets]). Rejections are 429 with Retry-After
// and OpenAI's x-ratelimit-*-tokens headers.
//
// # At run time
//
// The model table ([Gateway.SetModels]), the guard's mode ([Gateway.SetGuard]) and the
// budgets ([Budgets.Set], [Budgets.Remove]) change while requests flow. The scaling
// loop's budget action sets them with Budgets as its budgeter
// (autoscale.WithBudgeter(budgets); [Budgets.SetTokenRate]), so a Lua on_tick's
// budget(tenant, model, tokens_per_minute[, burst]) does too. A Lua on_request installed
// with [WithHook] rejects requests or changes their model or tenant before the guard
// and the budgets see them.
//
// # Estimating tokens
//
// The [Estimator] needs no vocabulary and downloads nothing: it is a linear model of
// the prompt's character classes (ASCII letters, spaces, line breaks, punctuation,
// accented Latin, other 2-byte runes, Hangul, other 3-byte runes, 4-byte runes, and
// messages for the chat framing), whose weights each model fits from the prompt tokens
// its upstream reports by exponentially weighted recursive least squares.
// TestEstimatorCalibrates shows the claim: after 200 requests the estimate of held-out
// prompts (short, long English, Go code, eight other languages) is within 10% of the
// count of OpenAI's o200k_base, cl100k_base and p50k_base tokenizers, on average per
// class; the counts are committed in testdata, made with a real tokenizer (see
// testdata/count_tokens.mjs).
//
// # Costs
//
// On the project's 2-core VM, parsing a 2 KB chat request, estimating it and reserving
// and settling its tokens from two buckets costs about 2.0 µs and one allocation (the
// user field's string; a known model's name is interned from the table): about half
// of what encoding/json's Valid alone takes on the same body (4.2 µs) in the same run
// (BenchmarkParseEstimateBudget, BenchmarkFloor). The scanner reads plain ASCII eight
// bytes at a time.
//
// # Windows
//
// Per model ([ScopeTTFT], [ScopeTPOT], [ScopeInputTokens], [ScopeOutputTokens],
// [ScopeCost]) and per tenant (the Tenant twins). A [middleware] behind the gateway,
// given [Classifier], keys its own route, tenant and model windows by the body's
// model and tenant, and records the request's tokens as their Value (see
// [middleware.Valuer]).
//
// # Example
//
//	reg, _ := metrics.NewRegistry()
//	models, _ := llm.LoadModels("models.json") // name, context_window, prices, tiers, overflow
//	gw, _ := llm.New(llm.Config{}, llm.WithRegistry(reg), llm.WithModels(models))
//	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(upstream) }}
//	inner, err := middleware.Wrap(proxy, middleware.WithRegistry(reg), middleware.WithClassifier(llm.Classifier(nil)))
//	http.ListenAndServe(":8080", gw.Wrap(inner))
//	...
//	w, _ := reg.Lookup(llm.ScopeTTFT, "gpt-4o")
//	fmt.Println(w.Snapshot(time.Minute).P99)
//
// Behind the gateway, a router reads the request with [FromRequest] and moves it to
// another model with [SetModel], and a balancer proxy reads its prompt prefix with
// [PromptPrefix] (balancer.WithPrompt), so that the balancer's Scoring algorithm
// sends requests that share a system prompt to the model server that has it cached.
package llm
