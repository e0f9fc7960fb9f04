// Package testenv decides what an integration test does when something it needs (a
// server, a binary, a browser) is missing: under a plain `go test` it skips with a
// message saying how to run it; under the README's test command, which sets
// AUTOSCALELUA_INTEGRATION=1, a skip would hide a missing part, so it fails instead.
package testenv

import (
	"os"
	"testing"
)

// Var is the environment variable that turns skips of integration tests into failures.
const Var = "AUTOSCALELUA_INTEGRATION"

// Strict reports whether integration tests must run (Var is set to 1).
func Strict() bool { return os.Getenv(Var) == "1" }

// Missing stops the test because what is missing: it skips, or fails when [Strict].
// how says how to provide it.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s is missing and %s=1 forbids skipping: %s", what, Var, how)
	}
	t.Skipf("%s is missing; %s (or run ./scripts/test.sh)", what, how)
}
