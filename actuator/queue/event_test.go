package queue_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func request(id string, replicas int, at time.Time) actuator.Request {
	return actuator.Request{
		Target:     actuator.Target{Name: "checkout", Namespace: "shop"},
		Replicas:   replicas,
		Previous:   2,
		Reason:     "p99 over budget",
		DecisionID: id,
		Time:       at,
	}
}

func encode(t testing.TB, req actuator.Request) []byte {
	t.Helper()
	b, err := queue.Encode(req, "/gateway/test")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodeSchema(t *testing.T) {
	b := encode(t, request("d-1", 5, t0))
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion":     "1.0",
		"type":            "io.autoscalelua.scale.v1",
		"source":          "/gateway/test",
		"id":              "d-1",
		"time":            "2025-03-01T12:00:00.123456789Z",
		"subject":         "shop/checkout",
		"datacontenttype": "application/json",
		"data": map[string]any{
			"version":     "v1",
			"target":      map[string]any{"name": "checkout", "namespace": "shop"},
			"replicas":    5.0,
			"previous":    2.0,
			"reason":      "p99 over budget",
			"decision_id": "d-1",
			"time":        "2025-03-01T12:00:00.123456789Z",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

func TestEncodeInvalid(t *testing.T) {
	if _, err := queue.Encode(actuator.Request{}, "/x"); !errors.Is(err, actuator.ErrInvalidRequest) {
		t.Errorf("Encode(invalid request) = %v", err)
	}
	if _, err := queue.Encode(request("d", 1, t0), ""); !errors.Is(err, actuator.ErrInvalidRequest) {
		t.Errorf("Encode(empty source) = %v", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, req := range []actuator.Request{
		request("d-1", 5, t0),
		{Target: actuator.Target{Name: "x", Kind: "deployments.apps"}, Replicas: 0, Previous: -1, DecisionID: "ü", Time: time.Unix(1, 0).In(time.FixedZone("z", 7200))},
	} {
		got, err := queue.Decode(encode(t, req))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(req, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodePoison(t *testing.T) {
	good := string(encode(t, request("d-1", 5, t0)))
	tests := []struct {
		name, data, mention string
	}{
		{"empty", ``, "not a CloudEvents"},
		{"not JSON", `hello`, "not a CloudEvents"},
		{"array", `[]`, "not a CloudEvents"},
		{"wrong type", strings.Replace(good, EventTypeQ, `"com.example.other"`, 1), "type"},
		{"wrong specversion", strings.Replace(good, `"specversion":"1.0"`, `"specversion":"0.3"`, 1), "specversion"},
		{"missing specversion", strings.Replace(good, `"specversion":"1.0",`, ``, 1), ""},
		{"wrong content type", strings.Replace(good, `"datacontenttype":"application/json"`, `"datacontenttype":"text/plain"`, 1), ""},
		{"wrong content type, string data", strings.Replace(strings.Split(good, `,"data"`)[0], `"application/json"`, `"text/plain"`, 1) + `,"data":"x"}`, "datacontenttype"},
		{"missing id", strings.Replace(good, `"id":"d-1",`, ``, 1), ""},
		{"missing source", strings.Replace(good, `"source":"/gateway/test",`, ``, 1), ""},
		{"wrong data version", strings.Replace(good, `"version":"v1"`, `"version":"v2"`, 1), `data: version "v2"`},
		{"unknown data field", strings.Replace(good, `"reason"`, `"zone":"a","reason"`, 1), `data: unknown field "zone"`},
		{"missing data field", strings.Replace(good, `"replicas":5,`, ``, 1), `data: missing field "replicas"`},
		{"wrong data type", strings.Replace(good, `"replicas":5`, `"replicas":"5"`, 1), "wrong type"},
		{"null data field", strings.Replace(good, `"replicas":5`, `"replicas":null`, 1), "null"},
		{"id mismatch", strings.Replace(good, `"id":"d-1"`, `"id":"d-2"`, 1), "differs"},
		{"negative replicas", strings.Replace(good, `"replicas":5`, `"replicas":-5`, 1), "negative"},
		{"no data", strings.Split(good, `,"data"`)[0] + "}", "data: not JSON"},
		{"too big", good + strings.Repeat(" ", queue.MaxEventSize), "more than"},
		{"term zero", ext(good, `"autoscaleterm":"0"`), "autoscaleterm is not a decimal number above zero"},
		{"seq with a leading zero", ext(good, `"autoscalestream":"a","autoscaleseq":"01"`), "autoscaleseq is not a decimal"},
		{"seq a number", ext(good, `"autoscalestream":"a","autoscaleseq":1`), "autoscaleseq is not a string"},
		{"seq too big", ext(good, `"autoscalestream":"a","autoscaleseq":"18446744073709551616"`), "autoscaleseq is not a decimal"},
		{"stream without seq", ext(good, `"autoscalestream":"a"`), "sequence number is required"},
		{"stream with a space", ext(good, `"autoscalestream":"a b","autoscaleseq":"1"`), "not printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := queue.Decode([]byte(tt.data))
			if !errors.Is(err, queue.ErrPoison) {
				t.Fatalf("Decode = %v, want ErrPoison", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Decode = %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

const EventTypeQ = `"io.autoscalelua.scale.v1"`

// ext adds extension attributes to an encoded event.
func ext(event, attrs string) string {
	return strings.TrimSuffix(event, "}") + "," + attrs + "}"
}
