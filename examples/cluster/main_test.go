package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCluster runs the three replicas against a redis-server for a few seconds: the
// leader decides on windows merged from all three, and the cluster stays near its
// limit.
func TestCluster(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server", "install it with `apt-get install -y redis-server`")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-duration", "3500ms", "-interval", "1s", "-clients", "16"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"gw-0", "gw-1", "gw-2", " leader ", " follower ", "cluster  admitted", "merged from [gw-0 gw-1 gw-2]"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
