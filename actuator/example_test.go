package actuator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// plainLogger writes log lines without the time so the output is stable.
func plainLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

func ExampleNewLog() {
	ctx := context.Background()
	dry := actuator.NewLog(plainLogger())
	err := dry.Scale(ctx, actuator.Request{
		Target:     actuator.Target{Name: "checkout"},
		Replicas:   5,
		Previous:   3,
		Reason:     "p99 over budget",
		DecisionID: "d-42",
		Time:       time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
	}
	n, err := dry.Replicas(ctx, actuator.Target{Name: "checkout"})
	fmt.Println(n, err)
	// Output:
	// level=INFO msg="actuator: scale (dry run)" target=checkout replicas=5 previous=3 reason="p99 over budget" decision_id=d-42 decision_time=2025-03-01T12:00:00.000Z
	// 5 <nil>
}

func ExampleFanOut() {
	dry := actuator.NewLog(nil)
	audit := actuator.Func(func(_ context.Context, req actuator.Request) error {
		fmt.Printf("audit: %s -> %d (%s)\n", req.Target, req.Replicas, req.DecisionID)
		return nil
	})
	a := actuator.FanOut(dry, audit)
	req := actuator.Request{
		Target: actuator.Target{Name: "checkout", Namespace: "shop"}, Replicas: 4, Previous: 2,
		DecisionID: "d-7", Time: time.Now(),
	}
	if err := a.Scale(context.Background(), req); err != nil {
		fmt.Println(err)
	}
	// The fan-out reads replicas from its first actuator, the dry run.
	n, _ := a.(actuator.ReplicaReader).Replicas(context.Background(), req.Target)
	fmt.Println("replicas:", n)
	// Output:
	// audit: shop/checkout -> 4 (d-7)
	// replicas: 4
}

func ExampleRequest_Validate() {
	err := actuator.Request{Target: actuator.Target{Name: "a/b"}, Replicas: -1, DecisionID: "d"}.Validate()
	fmt.Println(errors.Is(err, actuator.ErrInvalidRequest))
	fmt.Println(err)
	// Output:
	// true
	// actuator: invalid request: target name "a/b" contains one of "/"
	// replicas -1 is negative
	// decision time is required
}
