package webhook_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
	"github.com/google/go-cmp/cmp"
)

// FuzzParseSignature checks that ParseSignature never panics, that failures
// wrap ErrBadSignature, and that what it accepts formats back to a header
// that parses to the same value.
func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{
		webhook.Sign([]byte("k"), []byte("b"), time.Unix(1700000000, 0)),
		"t=1,v1=" + string(bytes.Repeat([]byte("0"), 64)) + ",v0=x",
		"t=01,v1=", "t=,", ",", "=", "t=1,t=2", "v1=zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		s, err := webhook.ParseSignature(header)
		if err != nil {
			if !errors.Is(err, webhook.ErrBadSignature) {
				t.Fatalf("ParseSignature error %v does not wrap ErrBadSignature", err)
			}
			return
		}
		if s.Timestamp < 0 || len(s.V1) == 0 || len(s.V1) > 8 {
			t.Fatalf("ParseSignature(%q) accepted %+v", header, s)
		}
		back, err := webhook.ParseSignature(s.String())
		if err != nil {
			t.Fatalf("ParseSignature(%q) = %v", s.String(), err)
		}
		if diff := cmp.Diff(s, back); diff != "" {
			t.Fatalf("round trip changed the signature (-first +second):\n%s", diff)
		}
	})
}

// FuzzReceiver sends correctly signed, arbitrary bodies to a Receiver: it
// must never panic, must answer only the documented statuses, and must call
// the actuator only for bodies Decode accepts.
func FuzzReceiver(f *testing.F) {
	good, _ := webhook.Encode(request("d-1", 5))
	f.Add(good, "d-1")
	f.Add([]byte(`{"version":"v1"}`), "x")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		rec := &actuatortest.Recorder{}
		rcv, err := webhook.NewReceiver(secret, rec, webhook.WithMaxBodyBytes(4096))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("Autoscalelua-Signature", webhook.Sign(secret, body, time.Now()))
		r.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		rcv.ServeHTTP(w, r)
		req, derr := webhook.Decode(body)
		applied := len(rec.Requests())
		switch w.Code {
		case http.StatusOK:
			if derr != nil || applied != 1 || req.DecisionID != key {
				t.Fatalf("200 for body %q key %q (decode %v, applied %d)", body, key, derr, applied)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if applied != 0 {
				t.Fatalf("%d but the actuator was called", w.Code)
			}
		default:
			t.Fatalf("unexpected status %d for body %q key %q", w.Code, body, key)
		}
	})
}
