package main

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	// The burst scales the fleet up, the calm after it scales it back down to one.
	for _, want := range []string{"fleet: jobs/worker 1 → ", "final: 1 workers\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	var peak bool
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "fleet: ") && (strings.Contains(line, "→ 10 ") || strings.Contains(line, "→ 12 ")) {
			peak = true
		}
	}
	if !peak {
		t.Error("the burst of 200 rps at 20 per worker never reached 10 workers")
	}
}
