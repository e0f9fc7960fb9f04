package queue_test

import (
	"context"
	"errors"
	"testing"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/google/go-cmp/cmp"
)

// FuzzDecode checks that Decode never panics, that every failure wraps
// ErrPoison, that what it accepts is valid and survives a round trip, and
// that the Consumer never asks for redelivery of a message it cannot decode.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, request("d-1", 5, t0)))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"io.autoscalelua.scale.v1","datacontenttype":"application/json","data_base64":"e30="}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"io.autoscalelua.scale.v1","datacontenttype":"application/json","data":{"version":"v1"}}`))
	f.Add([]byte(`{"specversion":"0.3"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := queue.Decode(data)
		c, cerr := queue.NewConsumer(&actuatortest.Recorder{})
		if cerr != nil {
			t.Fatal(cerr)
		}
		if herr := c.Handle(context.Background(), data); herr != nil {
			t.Fatalf("Handle asked for redelivery with a working actuator: %v", herr)
		}
		if err != nil {
			if !errors.Is(err, queue.ErrPoison) {
				t.Fatalf("Decode error %v does not wrap ErrPoison", err)
			}
			if s := c.Stats(); s.Poison != 1 {
				t.Fatalf("poison not counted: %+v", s)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid request: %v", err)
		}
		again, err := queue.Encode(req, "/fuzz")
		if err != nil {
			t.Fatalf("Encode(Decode(data)) = %v", err)
		}
		back, err := queue.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(data))) = %v", err)
		}
		if diff := cmp.Diff(req, back); diff != "" {
			t.Fatalf("round trip changed the request (-first +second):\n%s", diff)
		}
	})
}
