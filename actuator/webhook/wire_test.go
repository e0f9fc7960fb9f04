package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/internal/wire"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 500, time.UTC)

func request(id string, replicas int) actuator.Request {
	return actuator.Request{
		Target:     actuator.Target{Name: "checkout", Namespace: "shop"},
		Replicas:   replicas,
		Previous:   2,
		Reason:     "p99 over budget",
		DecisionID: id,
		Time:       t0,
	}
}

// TestEncodeDecode checks what the webhook adds to the shared codec (whose body
// format, round trips and fuzzing are tested in actuator/internal/wire): Encode
// sends wire.Marshal's body, refuses an invalid request, and Decode reads it
// back.
func TestEncodeDecode(t *testing.T) {
	req := request("d-1", 5)
	got, err := webhook.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := wire.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("Encode =\n%s\nwant wire.Marshal's\n%s", got, want)
	}
	back, err := webhook.Decode(got)
	if err != nil {
		t.Fatalf("Decode(%s) = %v", got, err)
	}
	if diff := cmp.Diff(req, back); diff != "" {
		t.Errorf("Decode(Encode(req)) (-want +got):\n%s", diff)
	}
	_, err = webhook.Encode(actuator.Request{Previous: -1, DecisionID: "d", Time: t0})
	if !errors.Is(err, actuator.ErrInvalidRequest) || !strings.HasPrefix(err.Error(), "webhook: encode: ") {
		t.Errorf("Encode(invalid) = %v, want a webhook: encode error wrapping ErrInvalidRequest", err)
	}
}

// TestDecodeMalformed checks that Decode wraps every failure of the shared
// strict decoder (tested case by case in actuator/internal/wire) in
// ErrMalformed, keeping its text and, for an invalid request,
// actuator.ErrInvalidRequest.
func TestDecodeMalformed(t *testing.T) {
	const good = `{"version":"v1","target":{"name":"checkout"},"replicas":5,"previous":2,"reason":"r","decision_id":"d-1","time":"2025-03-01T12:00:00Z"}`
	if _, err := webhook.Decode([]byte(good)); err != nil {
		t.Fatalf("Decode(good) = %v", err)
	}
	tests := []struct {
		name, body, want string
		invalid          bool
	}{
		{"empty", ``, "webhook: malformed request body: not JSON", false},
		{"two values", good + `{}`, "webhook: malformed request body: more than one JSON value", false},
		{"unknown field", strings.Replace(good, `"reason"`, `"extra":1,"reason"`, 1), `webhook: malformed request body: unknown field "extra"`, false},
		{"wrong type", strings.Replace(good, `"replicas":5`, `"replicas":"5"`, 1), `webhook: malformed request body: field "replicas" has the wrong type`, false},
		{"wrong version", strings.Replace(good, `"v1"`, `"v2"`, 1), `webhook: malformed request body: version "v2", want "v1"`, false},
		{"negative replicas", strings.Replace(good, `"replicas":5`, `"replicas":-1`, 1), "webhook: malformed request body: actuator: invalid request: replicas -1 is negative", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.Decode([]byte(tt.body))
			if !errors.Is(err, webhook.ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			if err.Error() != tt.want {
				t.Errorf("Decode = %q, want %q", err, tt.want)
			}
			if got := errors.Is(err, actuator.ErrInvalidRequest); got != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalidRequest) = %v, want %v", err, got, tt.invalid)
			}
		})
	}
}
