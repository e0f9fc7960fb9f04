package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(trace, []byte("second,count\n0,50\n1,60\n2,80\n3,200\n4,200\n5,40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	args := []string{"-policy", "adaptive,kpa", "-profile", "step," + trace, "-duration", "90s", "-seed", "3", "-out", dir}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"| step | adaptive |", "| step | kpa |", "| trace | adaptive |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range []string{"comparison.md", "step_adaptive.csv", "step_adaptive.svg", "step_kpa.txt", "step_comparison.svg", "trace_comparison.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := run(context.Background(), []string{"-policy", "nope"}, &out, &errOut); err == nil {
		t.Error("an unknown policy was accepted")
	}
	if err := run(context.Background(), []string{"-profile", "nope"}, &out, &errOut); err == nil {
		t.Error("an unknown profile was accepted")
	}
}
