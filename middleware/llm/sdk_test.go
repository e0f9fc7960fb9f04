package llm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// The official SDKs call the gateway over loopback as outside clients: their typed
// responses must parse, the usage they read must be what the upstream sent, and the
// gateway's windows must hold the same figures.

func openaiClient(rg *rig, tenant string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(rg.url+"/v1/"), option.WithAPIKey("test"),
		option.WithHeader("X-Tenant-ID", tenant), option.WithMaxRetries(0))
	return &c
}

func anthropicClient(rg *rig, tenant string) *anthropic.Client {
	c := anthropic.NewClient(aoption.WithBaseURL(rg.url+"/"), aoption.WithAPIKey("test"),
		aoption.WithHeader("X-Tenant-ID", tenant), aoption.WithMaxRetries(0))
	return &c
}

func checkWindows(t *testing.T, rg *rig, in, out float64) {
	t.Helper()
	got := [4]float64{rg.value(ScopeInputTokens, "small"), rg.value(ScopeOutputTokens, "small"),
		rg.value(ScopeTenantInputTokens, "acme"), rg.value(ScopeTenantOutputTokens, "acme")}
	if want := [4]float64{in, out, in, out}; got != want {
		t.Errorf("windows in, out (model, tenant) = %v, want %v", got, want)
	}
}

func TestOpenAISDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := openai.ChatCompletionNewParams{
		Model:     "small",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hello.")},
		MaxTokens: openai.Int(50),
	}
	t.Run("chat", func(t *testing.T) {
		rg := newRig(t, Config{})
		resp, err := openaiClient(rg, "acme").Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Usage.PromptTokens != 30 || resp.Usage.CompletionTokens != 7 || resp.Choices[0].Message.Content != "Hello there, friend." {
			t.Errorf("response %+v", resp)
		}
		checkWindows(t, rg, 30, 7)
	})
	t.Run("chat stream", func(t *testing.T) {
		rg := newRig(t, Config{})
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := openaiClient(rg, "acme").Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if acc.Usage.PromptTokens != 30 || acc.Usage.CompletionTokens != 7 || !strings.HasPrefix(acc.Choices[0].Message.Content, "tok0 tok1") {
			t.Errorf("accumulated %+v", acc.ChatCompletion)
		}
		checkWindows(t, rg, 30, 7)
		if rg.count(ScopeTTFT, "small") != 1 || rg.count(ScopeTPOT, "small") != 1 {
			t.Errorf("ttft or tpot not recorded")
		}
	})
	t.Run("embeddings", func(t *testing.T) {
		rg := newRig(t, Config{})
		rg.up.out = 0
		resp, err := openaiClient(rg, "acme").Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "small", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Usage.PromptTokens != 30 || len(resp.Data) != 1 {
			t.Errorf("response %+v", resp)
		}
		checkWindows(t, rg, 30, 0)
	})
	t.Run("errors are typed", func(t *testing.T) {
		models, _ := NewModels(Model{Name: "small", ContextWindow: 40})
		budgets, _ := NewBudgets(BudgetsConfig{}, metrics.NewManualClock(t0))
		budgets.Set("poor", "", Budget{TokensPerMinute: 10})
		rg := newRig(t, Config{Guard: GuardRefuse}, WithModels(models), WithBudgets(budgets))
		_, err := openaiClient(rg, "acme").Chat.Completions.New(ctx, params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
			t.Errorf("context guard: %v", err)
		}
		p := params
		p.MaxTokens = openai.Int(5)
		_, err = openaiClient(rg, "poor").Chat.Completions.New(ctx, p)
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" {
			t.Errorf("budget: %v", err)
		}
	})
}

func TestAnthropicSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := anthropic.MessageNewParams{
		Model:     "small",
		MaxTokens: 100,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello."))},
	}
	t.Run("messages", func(t *testing.T) {
		rg := newRig(t, Config{})
		msg, err := anthropicClient(rg, "acme").Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Usage.InputTokens != 30 || msg.Usage.OutputTokens != 7 || msg.Content[0].Text != "Hello there, friend." {
			t.Errorf("message %+v", msg)
		}
		checkWindows(t, rg, 30, 7)
	})
	t.Run("messages stream", func(t *testing.T) {
		rg := newRig(t, Config{})
		stream := anthropicClient(rg, "acme").Messages.NewStreaming(ctx, params)
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if msg.Usage.InputTokens != 30 || msg.Usage.OutputTokens != 7 || !strings.HasPrefix(msg.Content[0].Text, "tok0 tok1") {
			t.Errorf("accumulated %+v", msg)
		}
		checkWindows(t, rg, 30, 7)
	})
	t.Run("errors are typed", func(t *testing.T) {
		budgets, _ := NewBudgets(BudgetsConfig{}, metrics.NewManualClock(t0))
		budgets.Set("poor", "", Budget{TokensPerMinute: 10})
		rg := newRig(t, Config{}, WithBudgets(budgets))
		_, err := anthropicClient(rg, "poor").Messages.New(ctx, params)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Type() != "rate_limit_error" {
			t.Errorf("budget: %v", err)
		}
	})
}
