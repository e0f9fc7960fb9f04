package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stores lists the example's broker stores left in the temp dir.
func stores(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "autoscalelua-queue-example-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRun(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // so that stores() sees only this run's
	var out strings.Builder
	if err := run(context.Background(), &out, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)

	// The load step scales the platform up through the broker: at 120
	// requests per second and 20 per replica, to 6 or so.
	peak := 0
	for _, m := range regexp.MustCompile(`(?m)^controller: shop/checkout \d+ → (\d+) replicas \(event `).FindAllStringSubmatch(got, -1) {
		n, _ := strconv.Atoi(m[1])
		peak = max(peak, n)
	}
	if peak < 4 {
		t.Errorf("the controller never ran more than %d replicas; the load step should scale it to about 6", peak)
	}
	// Every event in the stream was applied once.
	m := regexp.MustCompile(`runs \d+ replicas after (\d+) events \((\d+) in the stream\)`).FindStringSubmatch(got)
	if m == nil || m[1] != m[2] {
		t.Errorf("applied and stored events differ: %q", m)
	}
	for _, want := range []string{
		"the stream holds ",
		"→ skipped as a duplicate\n",
		"→ skipped as stale\n",
		"→ skipped as poison\n",
		"Duplicates:1 Stale:1 Poison:1 Failed:0 GaveUp:0 Future:0 Refused:0}\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if held := regexp.MustCompile(`holds (\d+) messages before, (\d+) after`).FindStringSubmatch(got); held == nil || held[1] != held[2] {
		t.Errorf("the stream stored a re-published decision again: %q", held)
	}
	if s := stores(t); len(s) != 0 {
		t.Errorf("the broker's store was left behind: %v", s)
	}
}

// TestInterrupted stops the program early, as Ctrl-C does: it returns at
// once, skips the checks, removes the store and leaves no goroutine behind
// (TestMain).
func TestInterrupted(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(500*time.Millisecond, cancel)
	defer stop.Stop()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, &out, time.Hour); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("run took %v after being interrupted", el)
	}
	if got := out.String(); !strings.HasSuffix(got, "interrupted\n") || strings.Contains(got, "at-least-once") {
		t.Errorf("output:\n%s\nwant it to end with \"interrupted\" and show no checks", got)
	}
	if s := stores(t); len(s) != 0 {
		t.Errorf("the broker's store was left behind: %v", s)
	}
}
