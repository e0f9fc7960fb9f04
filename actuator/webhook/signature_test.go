package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/webhook"
)

func TestParseSignature(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		header  string
		wantTS  int64
		wantN   int
		wantErr string // "" means valid
	}{
		{"one", "t=1,v1=" + hex64, 1, 1, ""},
		{"two v1 and an unknown scheme", "t=1700000000,v0=zz,v1=" + hex64 + ",v1=" + hex64, 1700000000, 2, ""},
		{"order free", "v1=" + hex64 + ",t=0", 0, 1, ""},
		{"empty", "", 0, 0, "missing"},
		{"no t", "v1=" + hex64, 0, 0, "no timestamp"},
		{"no v1", "t=1", 0, 0, "no v1"},
		{"two t", "t=1,t=2,v1=" + hex64, 0, 0, "more than one timestamp"},
		{"negative t", "t=-1,v1=" + hex64, 0, 0, "malformed timestamp"},
		{"plus t", "t=+1,v1=" + hex64, 0, 0, "malformed timestamp"},
		{"leading zero", "t=01,v1=" + hex64, 0, 0, "malformed timestamp"},
		{"huge t", "t=9999999999999999999,v1=" + hex64, 0, 0, "malformed timestamp"},
		{"empty t", "t=,v1=" + hex64, 0, 0, "malformed timestamp"},
		{"short v1", "t=1,v1=abcd", 0, 0, "hex digits"},
		{"non-hex v1", "t=1,v1=" + strings.Repeat("zz", 32), 0, 0, "not hex"},
		{"pair without =", "t=1,v1", 0, 0, "malformed pair"},
		{"empty key", "t=1,=x,v1=" + hex64, 0, 0, "malformed pair"},
		{"space", "t=1, v1=" + hex64, 0, 0, "malformed pair"},
		{"too many v1", "t=1" + strings.Repeat(",v1="+hex64, 9), 0, 0, "more than 8"},
		{"too long", "t=1,v1=" + hex64 + ",x=" + strings.Repeat("a", 1000), 0, 0, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := webhook.ParseSignature(tt.header)
			if tt.wantErr != "" {
				if !errors.Is(err, webhook.ErrBadSignature) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSignature = %v, want ErrBadSignature mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSignature = %v", err)
			}
			if s.Timestamp != tt.wantTS || len(s.V1) != tt.wantN {
				t.Errorf("got t=%d with %d v1, want t=%d with %d", s.Timestamp, len(s.V1), tt.wantTS, tt.wantN)
			}
		})
	}
}

func TestVerifySignature(t *testing.T) {
	secret, body := []byte("s3cr3t"), []byte(`{"a":1}`)
	now := time.Unix(1_700_000_000, 0)
	good := webhook.Sign(secret, body, now)
	other := webhook.Sign([]byte("other"), body, now)
	s, _ := webhook.ParseSignature(other)
	g, _ := webhook.ParseSignature(good)
	rotated := webhook.Signature{Timestamp: g.Timestamp, V1: append(s.V1, g.V1...)}.String()
	tests := []struct {
		name    string
		header  string
		body    []byte
		now     time.Time
		wantErr error
	}{
		{"good", good, body, now, nil},
		{"second of two signatures matches", rotated, body, now, nil},
		{"at the tolerance edge", good, body, now.Add(5 * time.Minute), nil},
		{"future within tolerance", good, body, now.Add(-5 * time.Minute), nil},
		{"wrong secret", other, body, now, webhook.ErrBadSignature},
		{"body changed", good, []byte(`{"a":2}`), now, webhook.ErrBadSignature},
		{"timestamp changed", strings.Replace(good, "t=1700000000", "t=1700000001", 1), body, now, webhook.ErrBadSignature},
		{"too old", good, body, now.Add(5*time.Minute + time.Second), webhook.ErrStaleTimestamp},
		{"too far in the future", good, body, now.Add(-5*time.Minute - time.Second), webhook.ErrStaleTimestamp},
		{"garbage", "nonsense", body, now, webhook.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.VerifySignature(secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), string(secret)) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}
