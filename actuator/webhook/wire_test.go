package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
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

func TestEncode(t *testing.T) {
	got, err := webhook.Encode(request("d-1", 5))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":"v1","target":{"name":"checkout","namespace":"shop"},"replicas":5,"previous":2,"reason":"p99 over budget","decision_id":"d-1","time":"2025-03-01T12:00:00.0000005Z"}`
	if string(got) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", got, want)
	}
	if _, err := webhook.Encode(actuator.Request{}); !errors.Is(err, actuator.ErrInvalidRequest) {
		t.Errorf("Encode(invalid) = %v, want ErrInvalidRequest", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, req := range []actuator.Request{
		request("d-1", 5),
		{Target: actuator.Target{Name: "x", Kind: "deployments.apps"}, Replicas: 0, Previous: -1, DecisionID: "ü", Time: time.Unix(1, 0).In(time.FixedZone("x", 3600))},
	} {
		body, err := webhook.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := webhook.Decode(body)
		if err != nil {
			t.Fatalf("Decode(%s) = %v", body, err)
		}
		if diff := cmp.Diff(req, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	const good = `{"version":"v1","target":{"name":"checkout"},"replicas":5,"previous":2,"reason":"r","decision_id":"d-1","time":"2025-03-01T12:00:00Z"}`
	if _, err := webhook.Decode([]byte(good)); err != nil {
		t.Fatalf("Decode(good) = %v", err)
	}
	tests := []struct {
		name, body, mention string
	}{
		{"empty", ``, "not JSON"},
		{"array", `[]`, "not a JSON object"},
		{"truncated", good[:40], "not JSON"},
		{"two values", good + `{}`, "more than one"},
		{"trailing garbage", good + ` x`, "more than one"},
		{"unknown field", strings.Replace(good, `"reason"`, `"extra":1,"reason"`, 1), `unknown field "extra"`},
		{"unknown target field", strings.Replace(good, `"name"`, `"zone":"a","name"`, 1), `unknown field "zone"`},
		{"field case", strings.Replace(good, `"replicas"`, `"Replicas"`, 1), `unknown field "Replicas"`},
		{"duplicate field", strings.Replace(good, `"reason":"r"`, `"reason":"r","reason":"s"`, 1), "duplicate"},
		{"missing replicas", strings.Replace(good, `"replicas":5,`, ``, 1), `missing field "replicas"`},
		{"missing target name", strings.Replace(good, `"name":"checkout"`, ``, 1), `missing field "name"`},
		{"null replicas", strings.Replace(good, `"replicas":5`, `"replicas":null`, 1), "null"},
		{"string replicas", strings.Replace(good, `"replicas":5`, `"replicas":"5"`, 1), "wrong type"},
		{"fractional replicas", strings.Replace(good, `"replicas":5`, `"replicas":5.5`, 1), "wrong type"},
		{"huge replicas", strings.Replace(good, `"replicas":5`, `"replicas":1e400`, 1), "wrong type"},
		{"target not object", strings.Replace(good, `{"name":"checkout"}`, `"checkout"`, 1), "not a JSON object"},
		{"number reason", strings.Replace(good, `"reason":"r"`, `"reason":7`, 1), "wrong type"},
		{"wrong version", strings.Replace(good, `"v1"`, `"v2"`, 1), `version "v2"`},
		{"bad time", strings.Replace(good, `2025-03-01T12:00:00Z`, `yesterday`, 1), "RFC 3339"},
		{"negative replicas", strings.Replace(good, `"replicas":5`, `"replicas":-1`, 1), "negative"},
		{"empty decision id", strings.Replace(good, `"d-1"`, `""`, 1), "decision id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.Decode([]byte(tt.body))
			if !errors.Is(err, webhook.ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Decode = %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}
