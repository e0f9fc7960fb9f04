package llm

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadModels(t *testing.T) {
	m, err := LoadModels("testdata/models.json")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := m.Lookup("llama-70b")
	want := Model{Name: "llama-70b", ContextWindow: 8192, InputPrice: 6e-7, OutputPrice: 8e-7, Tiers: []string{"large"}, Overflow: "llama-70b-128k"}
	if d := cmp.Diff(want, got); !ok || d != "" {
		t.Errorf("Lookup (-want +got)\n%s", d)
	}
	if d := cmp.Diff([]string{"llama-70b", "llama-70b-128k"}, m.WithTier("large")); d != "" {
		t.Errorf("WithTier (-want +got)\n%s", d)
	}
	if c := got.Cost(1000, 100); c < 6.8e-4-1e-12 || c > 6.8e-4+1e-12 {
		t.Errorf("Cost = %v", c)
	}
	if len(m.All()) != 3 {
		t.Errorf("All = %v", m.All())
	}
}

func TestModelsInvalid(t *testing.T) {
	_, err := NewModels(
		Model{Name: ""},
		Model{Name: "a", ContextWindow: -1, InputPrice: -1},
		Model{Name: "a"},
		Model{Name: "b", ContextWindow: 100, Overflow: "c"},
		Model{Name: "c", ContextWindow: 50, Overflow: "d"},
		Model{Name: "e", Overflow: "missing"},
		Model{Name: "x", Overflow: "y"}, Model{Name: "y", Overflow: "x"},
	)
	if !errors.Is(err, ErrBadModels) {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{"has no name", "negative context window", "price -1", "appears twice", `"b" overflows to "c", whose window is not larger`, `"c" overflows to "d", which is not in the table`, `"e" overflows to "missing"`, "overflow cycle"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if _, err := ParseModels([]byte(`{"models":[{"name":"a","context_windw":5}]}`)); !errors.Is(err, ErrBadModels) {
		t.Errorf("a misspelled field: %v", err)
	}
	if _, err := LoadModels("testdata/none.json"); err == nil {
		t.Error("a missing file loaded")
	}
}
