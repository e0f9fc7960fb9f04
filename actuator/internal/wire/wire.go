package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// Version is the version of the body this package writes and reads.
const Version = "v1"

type target struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind,omitempty"`
}

type body struct {
	Version    string `json:"version"`
	Target     target `json:"target"`
	Replicas   int    `json:"replicas"`
	Previous   int    `json:"previous"`
	Reason     string `json:"reason"`
	DecisionID string `json:"decision_id"`
	Time       string `json:"time"`
}

// Marshal returns the version 1 body of req: namespace and kind are left out
// when empty; time is RFC 3339 with nanoseconds, in UTC. It does not
// validate req; callers do, to wrap the error in their own prefix.
func Marshal(req actuator.Request) ([]byte, error) {
	b, err := json.Marshal(body{
		Version:    Version,
		Target:     target(req.Target),
		Replicas:   req.Replicas,
		Previous:   req.Previous,
		Reason:     req.Reason,
		DecisionID: req.DecisionID,
		Time:       req.Time.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	return b, nil
}

var (
	requestFields = map[string]bool{"version": true, "target": true, "replicas": true, "previous": true, "reason": false, "decision_id": true, "time": true}
	targetFields  = map[string]bool{"name": true, "namespace": false, "kind": false}
)

// Unmarshal parses a body made by [Marshal], strictly: it must be exactly
// one JSON object with exactly the documented field names (case-sensitive,
// no unknown, duplicate or null fields; reason may be left out), version
// "v1", JSON numbers that are integers for replicas and previous, an RFC 3339
// time (every digit in place, a fraction of at most 9 digits, Z or a ±HH:MM
// offset) that is in the years 0000–9999 once in UTC, so that what it
// accepts [Marshal] writes back and Unmarshal reads again, and it must describe a valid [actuator.Request] (a failed
// [actuator.Request.Validate] is returned as is, so it wraps
// [actuator.ErrInvalidRequest]).
//
// Every error means the body is malformed; the texts are short and carry no
// package prefix ("unknown field \"zone\""), for callers to wrap in their
// own sentinel.
func Unmarshal(data []byte) (actuator.Request, error) {
	var req actuator.Request
	fields, err := object(data, requestFields)
	if err != nil {
		return req, err
	}
	var version, ts string
	if err := field(fields, "version", &version); err != nil {
		return req, err
	}
	if version != Version {
		return req, fmt.Errorf("version %q, want %q", version, Version)
	}
	tf, err := object(fields["target"], targetFields)
	if err != nil {
		return req, err
	}
	for _, f := range []struct {
		m    map[string]json.RawMessage
		name string
		dst  any
	}{
		{tf, "name", &req.Target.Name},
		{tf, "namespace", &req.Target.Namespace},
		{tf, "kind", &req.Target.Kind},
		{fields, "replicas", &req.Replicas},
		{fields, "previous", &req.Previous},
		{fields, "reason", &req.Reason},
		{fields, "decision_id", &req.DecisionID},
		{fields, "time", &ts},
	} {
		if err := field(f.m, f.name, f.dst); err != nil {
			return req, err
		}
	}
	if req.Time, err = parseTime(ts); err != nil {
		return req, err
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	return req, nil
}

// parseTime reads a time that [Marshal] can write back: the RFC 3339
// date-time shape with every digit in place (time.Parse alone takes a
// one-digit hour), and an instant whose UTC year lies in 0000–9999, the
// years RFC 3339 can write (0000-01-01T00:00:00+00:01 is year -1 in UTC,
// which Marshal would write as "-0001-..." and no decoder would read back).
func parseTime(s string) (time.Time, error) {
	if !rfc3339Shape(s) {
		return time.Time{}, errors.New("time is not RFC 3339")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("time is not RFC 3339")
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("time is year %d in UTC, outside 0000-9999", y)
	}
	return t, nil
}

// rfc3339Shape reports whether s has the shape of an RFC 3339 date-time as
// Marshal writes it: YYYY-MM-DDTHH:MM:SS, an optional fraction of 1 to 9
// digits, then Z or ±HH:MM. The ranges of the numbers are time.Parse's to
// check.
func rfc3339Shape(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return false
	}
	if !shape(s[:len(head)], head) {
		return false
	}
	s = s[len(head):]
	if s[0] == '.' {
		n := 1
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		s = s[n:]
	}
	return s == "Z" || (len(s) == 6 && (s[0] == '+' || s[0] == '-') && shape(s[1:], "dd:dd"))
}

// shape reports whether s matches pattern, where 'd' stands for an ASCII
// digit and any other byte for itself.
func shape(s, pattern string) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := range len(pattern) {
		if pattern[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != pattern[i] {
			return false
		}
	}
	return true
}

// object decodes exactly one JSON object into its raw fields, checking the
// field names against allowed (name → required).
func object(data []byte, allowed map[string]bool) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := make(map[string]json.RawMessage, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not JSON")
		}
		name, _ := tok.(string)
		if _, ok := allowed[name]; !ok {
			return nil, fmt.Errorf("unknown field %q", name)
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("duplicate field %q", name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("not JSON")
		}
		if string(raw) == "null" {
			return nil, fmt.Errorf("field %q is null", name)
		}
		fields[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, errors.New("not JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		if _, ok := fields[name]; allowed[name] && !ok {
			return nil, fmt.Errorf("missing field %q", name)
		}
	}
	return fields, nil
}

// field decodes fields[name], if present, into dst, which must be a pointer
// to a string or an int.
func field(fields map[string]json.RawMessage, name string, dst any) error {
	raw, ok := fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("field %q has the wrong type", name)
	}
	return nil
}
