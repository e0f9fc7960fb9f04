package plot_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate/plot"
)

func run(t testing.TB, sc simulate.Scenario, policy string) *simulate.Result {
	t.Helper()
	p, err := simulate.Shipped(policy)
	if err != nil {
		t.Fatal(err)
	}
	res, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: p, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestPlots(t *testing.T) {
	sc := simulate.Scenario{Name: "plot", Duration: 2 * time.Minute, Traffic: simulate.Step{From: 50, To: 200, At: time.Minute}}
	a, b := run(t, sc, "adaptive"), run(t, sc, "kpa")
	for name, f := range map[string]func(io.Writer) error{
		"timeline":   func(w io.Writer) error { return plot.Timeline(w, a) },
		"comparison": func(w io.Writer) error { return plot.Comparison(w, []*simulate.Result{a, b}) },
	} {
		var buf bytes.Buffer
		if err := f(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(bytes.TrimSpace(buf.Bytes()), []byte("<?xml")) || !bytes.Contains(buf.Bytes(), []byte("<svg")) {
			t.Fatalf("%s: not an SVG: %.100s", name, buf.String())
		}
		if name == "comparison" && (!strings.Contains(buf.String(), "adaptive") || !strings.Contains(buf.String(), "kpa")) {
			t.Fatalf("comparison does not name both policies")
		}
	}
}

func TestBadInput(t *testing.T) {
	var buf bytes.Buffer
	if err := plot.Timeline(&buf, nil); err == nil {
		t.Error("Timeline(nil): no error")
	}
	if err := plot.Comparison(&buf, nil); err == nil {
		t.Error("Comparison(no runs): no error")
	}
	if err := plot.Comparison(&buf, []*simulate.Result{nil}); err == nil {
		t.Error("Comparison(nil run): no error")
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes on bad input", buf.Len())
	}
}

// A run's timeline as SVG: offered load, replicas, p99 against the SLO, shed and
// failed requests.
func ExampleTimeline() {
	sc := simulate.Scenario{Name: "step", Duration: 2 * time.Minute, Traffic: simulate.Step{From: 50, To: 200, At: time.Minute}}
	p, err := simulate.Shipped("adaptive")
	if err != nil {
		panic(err)
	}
	res, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: p, Seed: 1})
	if err != nil {
		panic(err)
	}
	var svg bytes.Buffer
	if err := plot.Timeline(&svg, res); err != nil {
		panic(err)
	}
	fmt.Println(strings.Contains(svg.String(), "<svg"))
	// Output: true
}
