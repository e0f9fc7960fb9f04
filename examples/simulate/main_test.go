package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
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

// TestListAndHelp: -list names the Lua policies the gateway's -policy offers (both from
// simulate.ShippedLuaNames) and the Go twins, and -h is flag.ErrHelp, which main exits
// 0 on.
func TestListAndHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-list"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"policies (Lua, as the gateway's -policy): " + strings.Join(simulate.ShippedLuaNames(), ", ") + "\n",
		"target_tracking_go, kpa_go\n", "bursty",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-list lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut.String(), "-policy") {
		t.Errorf("-h: %v\n%s", err, errOut.String())
	}
}

// TestTraceLogs replays the simulator's sample access log and JSON lines with
// -trace (alone, so the default profile is not run), and a bad log fails naming
// its line; -h documents the formats.
func TestTraceLogs(t *testing.T) {
	dir := filepath.Join("..", "..", "autoscale", "simulate", "testdata")
	var out, errOut bytes.Buffer
	args := []string{"-policy", "kpa", "-trace", filepath.Join(dir, "access-combined.log"), "-trace", filepath.Join(dir, "requests.jsonl")}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"| access-combined | kpa | 40 |", "| requests | kpa | 40 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "flash-sale") {
		t.Errorf("-trace alone ran the default profile:\n%s", out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.log")
	log := `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 5` + "\n" + `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" oops 5` + "\n"
	if err := os.WriteFile(bad, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-trace", bad}, &out, &errOut)
	if !errors.Is(err, simulate.ErrInvalidTrace) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad log: err = %v, want ErrInvalidTrace naming line 2", err)
	}
	errOut.Reset()
	if err := run(context.Background(), []string{"-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"Combined Log Format", "JSON lines", "$request_time", "-trace"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, errOut.String())
		}
	}
}
