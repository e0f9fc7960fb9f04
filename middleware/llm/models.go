package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
)

// Model is one row of the model table: what the context guard, cost accounting and
// routing policies know of a model.
type Model struct {
	// Name is the model's name as requests give it ("gpt-4o").
	Name string `json:"name"`
	// ContextWindow is the most tokens (prompt and output) one request may take; 0
	// means unknown, and the guard lets every request through.
	ContextWindow int64 `json:"context_window"`
	// InputPrice and OutputPrice are the prices of one prompt and one output token,
	// in whatever currency the host reports (OpenAI's $2.50 per million is 2.5e-6).
	InputPrice  float64 `json:"input_price"`
	OutputPrice float64 `json:"output_price"`
	// Tiers are free labels ("large", "cheap", "hosted") that policies select by.
	Tiers []string `json:"tiers,omitempty"`
	// Overflow names the larger-context model a request too large for this one goes
	// to when the guard routes overflow; "" refuses such requests with 400.
	Overflow string `json:"overflow,omitempty"`
}

// Cost is the price of a request that used in and out tokens of m.
func (m Model) Cost(in, out int64) float64 {
	return float64(in)*m.InputPrice + float64(out)*m.OutputPrice
}

// HasTier reports whether m carries the tier label.
func (m Model) HasTier(tier string) bool { return slices.Contains(m.Tiers, tier) }

// Models is an immutable model table. Build it with [NewModels] or [ParseModels]; it is
// safe for concurrent use.
type Models struct {
	list   []Model
	byName map[string]*Model
}

// ErrBadModels is wrapped by every error of [NewModels] and [ParseModels].
var ErrBadModels = errors.New("llm: bad model table")

// NewModels builds a table, reporting every problem at once: an empty or repeated
// name, a negative window or price, an overflow model that is not in the table or has
// no larger window, or a cycle of overflows.
func NewModels(models ...Model) (*Models, error) {
	t := &Models{list: make([]Model, len(models)), byName: make(map[string]*Model, len(models))}
	var errs []error
	for i, m := range models {
		m.Tiers = slices.Clone(m.Tiers)
		t.list[i] = m
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("%w: model %d has no name", ErrBadModels, i))
			continue
		case t.byName[m.Name] != nil:
			errs = append(errs, fmt.Errorf("%w: model %q appears twice", ErrBadModels, m.Name))
			continue
		}
		if m.ContextWindow < 0 {
			errs = append(errs, fmt.Errorf("%w: model %q: negative context window", ErrBadModels, m.Name))
		}
		for _, p := range [...]float64{m.InputPrice, m.OutputPrice} {
			if p < 0 || math.IsNaN(p) || math.IsInf(p, 0) {
				errs = append(errs, fmt.Errorf("%w: model %q: price %v is not a finite non-negative number", ErrBadModels, m.Name, p))
			}
		}
		t.byName[m.Name] = &t.list[i]
	}
	for _, m := range t.list {
		if m.Overflow == "" || m.Name == "" {
			continue
		}
		o, ok := t.byName[m.Overflow]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: model %q overflows to %q, which is not in the table", ErrBadModels, m.Name, m.Overflow))
		case o.ContextWindow != 0 && o.ContextWindow <= m.ContextWindow:
			errs = append(errs, fmt.Errorf("%w: model %q overflows to %q, whose window is not larger", ErrBadModels, m.Name, m.Overflow))
		}
		seen := map[string]bool{m.Name: true}
		for n := m.Overflow; n != ""; {
			if seen[n] {
				errs = append(errs, fmt.Errorf("%w: model %q: overflow cycle", ErrBadModels, m.Name))
				break
			}
			seen[n] = true
			next, ok := t.byName[n]
			if !ok {
				break
			}
			n = next.Overflow
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseModels reads a table from JSON: {"models": [{"name": ..., "context_window": ...,
// "input_price": ..., "output_price": ..., "tiers": [...], "overflow": ...}, ...]}.
// Unknown fields are errors, so a misspelled one does not pass unnoticed.
func ParseModels(data []byte) (*Models, error) {
	var doc struct {
		Models []Model `json:"models"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadModels, err)
	}
	return NewModels(doc.Models...)
}

// LoadModels reads a table from a JSON file (see [ParseModels]).
func LoadModels(path string) (*Models, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llm: model table: %w", err)
	}
	return ParseModels(data)
}

// Lookup returns the named model.
func (t *Models) Lookup(name string) (Model, bool) {
	if t == nil {
		return Model{}, false
	}
	m, ok := t.byName[name]
	if !ok {
		return Model{}, false
	}
	return *m, true
}

// lookupBytes finds a model by its name's bytes without allocating.
func (t *Models) lookupBytes(name []byte) (*Model, bool) {
	if t == nil {
		return nil, false
	}
	m, ok := t.byName[string(name)]
	return m, ok
}

func (t *Models) lookupName(name string) (*Model, bool) {
	if t == nil {
		return nil, false
	}
	m, ok := t.byName[name]
	return m, ok
}

// All returns the table's models in their order.
func (t *Models) All() []Model {
	if t == nil {
		return nil
	}
	out := make([]Model, len(t.list))
	for i, m := range t.list {
		m.Tiers = slices.Clone(m.Tiers)
		out[i] = m
	}
	return out
}

// WithTier returns the names of the models carrying the tier label, in table order.
func (t *Models) WithTier(tier string) []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, m := range t.list {
		if m.HasTier(tier) {
			out = append(out, m.Name)
		}
	}
	return out
}
