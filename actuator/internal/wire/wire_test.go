package wire_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/internal/wire"
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

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		req  actuator.Request
		want string
	}{
		{"namespace", request("d-1", 5),
			`{"version":"v1","target":{"name":"checkout","namespace":"shop"},"replicas":5,"previous":2,"reason":"p99 over budget","decision_id":"d-1","time":"2025-03-01T12:00:00.0000005Z"}`},
		{"kind, no reason, zone converted to UTC",
			actuator.Request{Target: actuator.Target{Name: "x", Kind: "deployments.apps"}, Previous: -1, DecisionID: "d", Time: time.Unix(1, 0).In(time.FixedZone("x", 3600))},
			`{"version":"v1","target":{"name":"x","kind":"deployments.apps"},"replicas":0,"previous":-1,"reason":"","decision_id":"d","time":"1970-01-01T00:00:01Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, req := range []actuator.Request{
		request("d-1", 5),
		{Target: actuator.Target{Name: "first"}, Previous: -1, DecisionID: "y0", Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Target: actuator.Target{Name: "last"}, Previous: -1, DecisionID: "y9999", Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Target: actuator.Target{Name: "offset"}, Previous: -1, DecisionID: "y0-east", Time: time.Date(0, 1, 1, 0, 1, 0, 0, time.FixedZone("", 60))},
		{Target: actuator.Target{Name: "x", Kind: "deployments.apps"}, Replicas: 0, Previous: -1, DecisionID: "ü", Time: time.Unix(1, 0).In(time.FixedZone("x", 3600))},
	} {
		t.Run(req.DecisionID, func(t *testing.T) {
			body, err := wire.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.Unmarshal(body)
			if err != nil {
				t.Fatalf("Unmarshal(%s) = %v", body, err)
			}
			if diff := cmp.Diff(req, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	const good = `{"version":"v1","target":{"name":"checkout"},"replicas":5,"previous":2,"reason":"r","decision_id":"d-1","time":"2025-03-01T12:00:00Z"}`
	if _, err := wire.Unmarshal([]byte(good)); err != nil {
		t.Fatalf("Unmarshal(good) = %v", err)
	}
	if _, err := wire.Unmarshal([]byte(strings.Replace(good, `"reason":"r",`, ``, 1))); err != nil {
		t.Fatalf("Unmarshal(good without reason) = %v", err)
	}
	tests := []struct {
		name, body, want string
		invalid          bool // the error wraps actuator.ErrInvalidRequest
	}{
		{"empty", ``, "not JSON", false},
		{"array", `[]`, "not a JSON object", false},
		{"truncated", good[:40], "not JSON", false},
		{"two values", good + `{}`, "more than one JSON value", false},
		{"trailing garbage", good + ` x`, "more than one JSON value", false},
		{"unknown field", strings.Replace(good, `"reason"`, `"extra":1,"reason"`, 1), `unknown field "extra"`, false},
		{"unknown target field", strings.Replace(good, `"name"`, `"zone":"a","name"`, 1), `unknown field "zone"`, false},
		{"field case", strings.Replace(good, `"replicas"`, `"Replicas"`, 1), `unknown field "Replicas"`, false},
		{"duplicate field", strings.Replace(good, `"reason":"r"`, `"reason":"r","reason":"s"`, 1), `duplicate field "reason"`, false},
		{"missing replicas", strings.Replace(good, `"replicas":5,`, ``, 1), `missing field "replicas"`, false},
		{"missing target name", strings.Replace(good, `"name":"checkout"`, ``, 1), `missing field "name"`, false},
		{"null replicas", strings.Replace(good, `"replicas":5`, `"replicas":null`, 1), `field "replicas" is null`, false},
		{"string replicas", strings.Replace(good, `"replicas":5`, `"replicas":"5"`, 1), `field "replicas" has the wrong type`, false},
		{"fractional replicas", strings.Replace(good, `"replicas":5`, `"replicas":5.5`, 1), `field "replicas" has the wrong type`, false},
		{"huge replicas", strings.Replace(good, `"replicas":5`, `"replicas":1e400`, 1), `field "replicas" has the wrong type`, false},
		{"target not object", strings.Replace(good, `{"name":"checkout"}`, `"checkout"`, 1), "not a JSON object", false},
		{"number reason", strings.Replace(good, `"reason":"r"`, `"reason":7`, 1), `field "reason" has the wrong type`, false},
		{"wrong version", strings.Replace(good, `"v1"`, `"v2"`, 1), `version "v2", want "v1"`, false},
		{"bad time", strings.Replace(good, `2025-03-01T12:00:00Z`, `yesterday`, 1), "time is not RFC 3339", false},
		{"one-digit hour", strings.Replace(good, `2025-03-01T12:00:00Z`, `2025-03-01T1:00:00Z`, 1), "time is not RFC 3339", false},
		{"year -1 in UTC", strings.Replace(good, `2025-03-01T12:00:00Z`, `0000-01-01T00:00:00+00:01`, 1), "year -1 in UTC", false},
		{"fuzz: year -1, one-digit hour", strings.Replace(good, `2025-03-01T12:00:00Z`, `0000-01-01T0:00:00+00:01`, 1), "time is not RFC 3339", false},
		{"year 10000 in UTC", strings.Replace(good, `2025-03-01T12:00:00Z`, `9999-12-31T23:59:59-00:01`, 1), "year 10000 in UTC", false},
		{"ten fraction digits", strings.Replace(good, `2025-03-01T12:00:00Z`, `2025-03-01T12:00:00.1234567891Z`, 1), "time is not RFC 3339", false},
		{"empty fraction", strings.Replace(good, `2025-03-01T12:00:00Z`, `2025-03-01T12:00:00.Z`, 1), "time is not RFC 3339", false},
		{"short offset", strings.Replace(good, `2025-03-01T12:00:00Z`, `2025-03-01T12:00:00+01`, 1), "time is not RFC 3339", false},
		{"lower-case t", strings.Replace(good, `2025-03-01T12:00:00Z`, `2025-03-01t12:00:00Z`, 1), "time is not RFC 3339", false},
		{"negative replicas", strings.Replace(good, `"replicas":5`, `"replicas":-1`, 1), "replicas -1 is negative", true},
		{"empty decision id", strings.Replace(good, `"d-1"`, `""`, 1), "decision id is required", true},
		{"slash in name", strings.Replace(good, `"checkout"`, `"a/b"`, 1), `target name "a/b"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.Unmarshal([]byte(tt.body))
			if err == nil {
				t.Fatal("Unmarshal = nil, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unmarshal = %q, want it to mention %q", err, tt.want)
			}
			if got := errors.Is(err, actuator.ErrInvalidRequest); got != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalidRequest) = %v, want %v", err, got, tt.invalid)
			}
			if strings.HasPrefix(err.Error(), "wire:") {
				t.Errorf("Unmarshal = %q: its errors carry no prefix, callers add theirs", err)
			}
		})
	}
}

// FuzzUnmarshal checks that Unmarshal never panics, that whatever it accepts
// is a valid request, and that it survives a Marshal/Unmarshal round trip
// byte for byte.
func FuzzUnmarshal(f *testing.F) {
	good, _ := wire.Marshal(request("d-1", 5))
	for _, s := range []string{
		string(good),
		`{"version":"v1","target":{"name":"a","namespace":"b","kind":"c"},"replicas":0,"previous":-1,"decision_id":"x","time":"2025-01-01T00:00:00+01:00"}`,
		`{"version":"v1"}`, `{}`, `[]`, `null`, `"x"`, `{"version":"v1"}{}`,
		`{"version":"v1","target":{"name":"a"},"replicas":1e3,"previous":0,"decision_id":"x","time":"2025-01-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := wire.Unmarshal(body)
		if err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("Unmarshal accepted an invalid request: %v", err)
		}
		again, err := wire.Marshal(req)
		if err != nil {
			t.Fatalf("Marshal(Unmarshal(body)) = %v", err)
		}
		back, err := wire.Unmarshal(again)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(Unmarshal(body))) = %v", err)
		}
		if diff := cmp.Diff(req, back); diff != "" {
			t.Fatalf("round trip changed the request (-first +second):\n%s", diff)
		}
		twice, err := wire.Marshal(back)
		if err != nil || string(twice) != string(again) {
			t.Fatalf("Marshal is not stable: %s then %s (%v)", again, twice, err)
		}
	})
}

// The body is encoded and decoded once per decision, on the control plane;
// these measure what that costs.
func BenchmarkMarshal(b *testing.B) {
	req := request("d-1", 5)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Marshal(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	body, err := wire.Marshal(request("d-1", 5))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Unmarshal(body); err != nil {
			b.Fatal(err)
		}
	}
}
