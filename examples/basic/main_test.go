package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the example on a free port until it has printed windows with traffic
// in them, then stops it and checks that it shut down cleanly.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-addr", "127.0.0.1:0", "-interval", "100ms"}, pw)
		pw.Close()
		errc <- err
	}()

	sc := bufio.NewScanner(pr)
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if strings.HasPrefix(line, "route") && strings.Contains(line, "GET /slow") && !strings.Contains(line, " 0.0 req/s") {
			break
		}
		if len(seen) > 2000 {
			t.Fatalf("no traffic on GET /slow after %d lines:\n%s", len(seen), strings.Join(seen, "\n"))
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.HasPrefix(seen[0], "listening on http://127.0.0.1:") {
		t.Errorf("first line %q", seen[0])
	}
}
