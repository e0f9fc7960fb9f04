package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestSoakCompressed runs the -soak mode with its timings compressed tenfold and
// more: a flash sale every 3 s, a fault every second (each of the four at least
// once), a sample every second. The soak's own verdict must pass: heap and goroutines
// flat a load period apart, the accounting exact, no panic, the broken reload refused.
func TestSoakCompressed(t *testing.T) {
	sale := simulate.FlashSale{Base: 40, Peak: 5, Start: time.Second, Rise: 500 * time.Millisecond, Hold: 1000 * time.Millisecond, Fall: 500 * time.Millisecond}
	out := &syncBuffer{}
	cfg := config{addr: "127.0.0.1:0", policy: "adaptive", tick: 200 * time.Millisecond, minReplicas: 2, maxReplicas: 10,
		duration: 7 * time.Second, profile: sale, period: 3 * time.Second, soak: true,
		soakTimes: &soakTimes{FaultEvery: time.Second, FaultFirst: 500 * time.Millisecond, KillRestart: 500 * time.Millisecond,
			SlowFor: 700 * time.Millisecond, ActuatorFails: 700 * time.Millisecond, SampleEvery: time.Second}}
	if err := run(context.Background(), cfg, out); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	got := out.String()
	for _, want := range []string{"fault: killed backend-", "fault: slowed backend-", "fault: actuator failing",
		"fault: broken policy reload: luabind", "samples a load period apart", "soak: ok"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "FAIL") {
		t.Errorf("output:\n%s", got)
	}
	for line := range strings.Lines(got) {
		if strings.HasPrefix(line, "soak") {
			t.Log(strings.TrimSpace(line))
		}
	}
}
