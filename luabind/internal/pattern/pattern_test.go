package pattern

import (
	"errors"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	tests := []struct {
		s, p       string
		init       int
		start, end int
	}{
		{"hello", "l+", 0, 2, 4},
		{"hello", "^h", 0, 0, 1},
		{"hello", "^e", 0, -1, -1},
		{"hello", "o$", 0, 4, 5},
		{"hello", "", 5, 5, 5},
		{"a(b(c)d)e", "%b()", 0, 1, 8},
		{"THE (quick) fox", "%f[%a]%a+", 4, 5, 10},
		{"aaab", "a-b", 0, 0, 4},
		{"key = val", "(%w+)%s*=%s*(%w+)", 0, 0, 9},
	}
	for _, tt := range tests {
		var m Matcher
		start, end, err := m.Find(tt.s, tt.p, tt.init)
		if err != nil || start != tt.start || end != tt.end {
			t.Errorf("Find(%q, %q, %d) = %d, %d, %v; want %d, %d", tt.s, tt.p, tt.init, start, end, err, tt.start, tt.end)
		}
	}
}

// TestCheckStopsBacktracking: a pattern that backtracks for hours on 4 KB stops at
// the first check that fails, after at most CheckEvery more steps.
func TestCheckStopsBacktracking(t *testing.T) {
	stopped := errors.New("stopped")
	calls := 0
	m := Matcher{Check: func() error {
		calls++
		if calls == 10 {
			return stopped
		}
		return nil
	}}
	_, _, err := m.Find(strings.Repeat("a", 4096), ".-.-.-.-x", 0)
	if !errors.Is(err, stopped) {
		t.Fatalf("err = %v, want the check's error", err)
	}
	if calls != 10 {
		t.Errorf("check called %d times, want 10", calls)
	}
	// The matcher is usable again after a stop.
	m.Check = nil
	if start, end, err := m.Find("abc", "b", 0); err != nil || start != 1 || end != 2 {
		t.Errorf("after a stop: %d, %d, %v", start, end, err)
	}
}

func TestMalformed(t *testing.T) {
	for _, p := range []string{"[a", "%", "a)", "%1", "%b", "%fa", strings.Repeat("(", 33) + strings.Repeat(")", 33)} {
		var m Matcher
		if _, _, err := m.Find("a", p, 0); err == nil {
			t.Errorf("Find(%q): no error", p)
		}
	}
}
