package actuator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
)

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := actuator.NewLog(logger)
	ctx := context.Background()
	target := actuator.Target{Name: "checkout"}

	if _, err := l.Replicas(ctx, target); !errors.Is(err, actuator.ErrUnknownTarget) {
		t.Fatalf("Replicas before Scale = %v, want ErrUnknownTarget", err)
	}
	req := validRequest()
	req.Replicas = 7
	if err := l.Scale(ctx, req); err != nil {
		t.Fatal(err)
	}
	n, err := l.Replicas(ctx, target)
	if err != nil || n != 7 {
		t.Fatalf("Replicas = %d, %v; want 7, nil", n, err)
	}
	for _, want := range []string{"target=checkout", "replicas=7", "previous=2", "decision_id=d-1", "reason=busy"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q lacks %q", buf.String(), want)
		}
	}

	bad := req
	bad.Replicas = -1
	err = l.Scale(ctx, bad)
	if !errors.Is(err, actuator.ErrInvalidRequest) || !actuator.IsPermanent(err) {
		t.Errorf("Scale(invalid) = %v, want permanent ErrInvalidRequest", err)
	}
	if n, _ := l.Replicas(ctx, target); n != 7 {
		t.Errorf("invalid request changed replicas to %d", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Scale(cctx, req); !errors.Is(err, context.Canceled) {
		t.Errorf("Scale(canceled ctx) = %v, want context.Canceled", err)
	}
}

func TestLogInitialReplicasAndNilLogger(t *testing.T) {
	l := actuator.NewLog(nil, actuator.WithInitialReplicas(2))
	n, err := l.Replicas(context.Background(), actuator.Target{Name: "never"})
	if err != nil || n != 2 {
		t.Fatalf("Replicas = %d, %v; want 2, nil", n, err)
	}
	if err := l.Scale(context.Background(), validRequest()); err != nil {
		t.Fatal(err)
	}
}

func TestLogConcurrent(t *testing.T) {
	l := actuator.NewLog(nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			req := validRequest()
			req.Target.Name = fmt.Sprintf("t%d", i%2)
			req.Replicas = i
			if err := l.Scale(context.Background(), req); err != nil {
				t.Error(err)
			}
			_, _ = l.Replicas(context.Background(), req.Target)
		})
	}
	wg.Wait()
}

func TestFanOut(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	tests := []struct {
		name          string
		errs          []error // one recorder per entry, failing with that error
		wantErr       bool
		wantPermanent bool
		wantMention   []string
	}{
		{"none", nil, false, false, nil},
		{"one ok", []error{nil}, false, false, nil},
		{"all ok", []error{nil, nil, nil}, false, false, nil},
		{"one fails", []error{nil, boom, nil}, true, false, []string{"fan-out 1: boom"}},
		{"single fails", []error{boom}, true, false, []string{"fan-out 0: boom"}},
		{"two fail", []error{boom, nil, actuator.Permanent(boom)}, true, true, []string{"fan-out 0", "fan-out 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := make([]*actuatortest.Recorder, len(tt.errs))
			as := make([]actuator.Actuator, 0, len(tt.errs)+1)
			for i, e := range tt.errs {
				recs[i] = &actuatortest.Recorder{}
				recs[i].SetErr(e)
				as = append(as, recs[i])
			}
			as = append(as, nil) // ignored
			err := actuator.FanOut(as...).Scale(ctx, validRequest())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Scale = %v, wantErr %v", err, tt.wantErr)
			}
			if actuator.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, !tt.wantPermanent, tt.wantPermanent)
			}
			for _, w := range tt.wantMention {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for i, r := range recs {
				if got := len(r.Requests()); got != 1 {
					t.Errorf("actuator %d called %d times, want 1", i, got)
				}
			}
		})
	}
}

func TestFanOutIsConcurrent(t *testing.T) {
	// Each actuator waits for the other: only concurrent calls finish.
	var wg sync.WaitGroup
	wg.Add(2)
	meet := actuator.Func(func(ctx context.Context, _ actuator.Request) error {
		wg.Done()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := actuator.FanOut(meet, meet).Scale(ctx, validRequest()); err != nil {
		t.Fatalf("Scale = %v; the fan-out did not call its actuators concurrently", err)
	}
}

func TestFanOutReplicaReader(t *testing.T) {
	ctx := context.Background()
	var first actuatortest.Recorder
	first.SetReplicas(actuator.Target{Name: "checkout"}, 4)
	rr, ok := actuator.FanOut(nil, &first, actuator.Func(nil)).(actuator.ReplicaReader)
	if !ok {
		t.Fatal("FanOut with a ReplicaReader first is not a ReplicaReader")
	}
	if n, err := rr.Replicas(ctx, actuator.Target{Name: "checkout"}); err != nil || n != 4 {
		t.Errorf("Replicas = %d, %v; want 4, nil", n, err)
	}
	if _, ok := actuator.FanOut(actuator.Func(nil), &first).(actuator.ReplicaReader); ok {
		t.Error("FanOut whose first actuator is no ReplicaReader claims to be one")
	}
}
