package simulate_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoPlottingDependency checks that the simulator links no plotting library: the
// SVG plots live in simulate/plot so that a program calling Run does not link gonum;
// nor failsafe-go, which only the comparison test (failsafe_test.go) imports. It
// asks the go command (which runs this test) for the package's dependencies.
func TestNoPlottingDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "gonum.org/") || strings.HasPrefix(dep, "github.com/failsafe-go/") {
			t.Errorf("simulate depends on %s", dep)
		}
	}
}
