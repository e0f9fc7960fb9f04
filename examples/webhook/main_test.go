package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)

	// The load step scales the platform up through the webhook: at 120 requests
	// per second and 20 per replica, to 6 or so.
	peak := 0
	for _, m := range regexp.MustCompile(`(?m)^platform: shop/checkout \d+ → (\d+) replicas \(decision `).FindAllStringSubmatch(got, -1) {
		n, _ := strconv.Atoi(m[1])
		peak = max(peak, n)
	}
	if peak < 4 {
		t.Errorf("the platform never ran more than %d replicas; the load step should scale it to about 6", peak)
	}
	for _, want := range []string{
		"matches v1: true\n",
		"webhook.VerifySignature: <nil>\n",
		"replay of the same request     → 200 ok, Idempotent-Replayed: true (not applied again)\n",
		"body changed, signature kept   → 401 invalid signature\n",
		"signed with another secret     → 401 invalid signature\n",
		"signed ten minutes ago         → 401 stale or future timestamp\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Every decision the gateway sent was applied once, but for the last one,
	// whose call the end of the run may cancel.
	sent, applied := strings.Count(got, "gateway: "), strings.Count(got, "\nplatform: shop/checkout ")-1
	if applied > sent || applied < sent-1 {
		t.Errorf("gateway sent %d decisions, platform applied %d", sent, applied)
	}
}

// TestInterrupted stops the program early, as Ctrl-C does: it returns at
// once, skips the checks, and leaves no goroutine behind (TestMain).
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(300*time.Millisecond, cancel)
	defer stop.Stop()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, &out, time.Hour); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("run took %v after being interrupted", el)
	}
	if got := out.String(); !strings.HasSuffix(got, "interrupted\n") || strings.Contains(got, "signature of") {
		t.Errorf("output:\n%s\nwant it to end with \"interrupted\" and show no checks", got)
	}
}
