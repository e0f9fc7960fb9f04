package llm

import (
	"bufio"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// prompt is one line of testdata/prompts.jsonl: a chat prompt and the tokens it takes
// under three of OpenAI's encodings, counted by testdata/count_tokens.mjs with a real
// tokenizer (js-tiktoken's port of tiktoken) by the chat-format rule of OpenAI's
// cookbook. gen_prompts.py picked the prompts (short questions, English man pages, Go
// source, translated man pages in eight languages).
type prompt struct {
	Set      string            `json:"set"`
	Class    string            `json:"class"`
	Lang     string            `json:"lang"`
	Messages []json.RawMessage `json:"messages"`
	Tokens   map[string]int64  `json:"tokens"`
	body     []byte
}

func loadPrompts(t testing.TB) []prompt {
	t.Helper()
	f, err := os.Open("testdata/prompts.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []prompt
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p prompt
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		p.body, _ = json.Marshal(map[string]any{"model": "m", "messages": p.Messages})
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEstimatorCalibrates checks the claim of the package doc: after 200 requests of a
// model, each reporting the prompt tokens its tokenizer counts, the estimate of
// held-out prompts is within 10% of their true count, on average over every prompt
// class (short, long English, code, non-English), for three tokenizers the priors
// were not all made for.
func TestEstimatorCalibrates(t *testing.T) {
	ps := loadPrompts(t)
	var train, held []prompt
	for _, p := range ps {
		if p.Set == "train" {
			train = append(train, p)
		} else {
			held = append(held, p)
		}
	}
	if len(train) < 150 || len(held) < 40 {
		t.Fatalf("%d training and %d held-out prompts", len(train), len(held))
	}
	for _, enc := range []string{"o200k_base", "cl100k_base", "p50k_base"} {
		t.Run(enc, func(t *testing.T) {
			e, err := NewEstimator(EstimatorConfig{})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var q Request
			errAt := func() (map[string]float64, float64) {
				sum := map[string]float64{}
				n := map[string]int{}
				var all float64
				for _, p := range held {
					if err := Parse(p.body, EndpointChatCompletions, &q); err != nil {
						t.Fatal(err)
					}
					got, want := float64(e.Estimate(&q)), float64(p.Tokens[enc])
					rel := math.Abs(got-want) / want
					sum[p.Class] += rel
					n[p.Class]++
					all += rel
				}
				for k := range sum {
					sum[k] /= float64(n[k])
				}
				return sum, all / float64(len(held))
			}
			before, beforeAll := errAt()
			for i := 0; i < 200; i++ {
				p := train[rng.IntN(len(train))]
				if err := Parse(p.body, EndpointChatCompletions, &q); err != nil {
					t.Fatal(err)
				}
				e.Observe(&q, p.Tokens[enc])
			}
			after, afterAll := errAt()
			t.Logf("mean relative error before %.3f %v, after 200 requests %.3f %v", beforeAll, before, afterAll, after)
			if afterAll > 0.10 {
				t.Errorf("mean relative error after calibration %.3f, want <= 0.10", afterAll)
			}
			for class, v := range after {
				if v > 0.10 {
					t.Errorf("class %s: mean relative error %.3f, want <= 0.10", class, v)
				}
			}
			if s := e.Stats(); s.Used < 190 {
				t.Errorf("stats %+v: fewer than 190 samples used", s)
			}
		})
	}
}
