package webhook

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

// Version is the version of the JSON body this package sends and accepts.
const Version = "v1"

// ErrMalformed reports a request body that is not a valid version 1 scale
// request: not exactly one JSON object, an unknown or missing field, a wrong
// type, a wrong version, or a request that fails [actuator.Request.Validate].
var ErrMalformed = errors.New("webhook: malformed request body")

type wireTarget struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind,omitempty"`
}

type wireRequest struct {
	Version    string     `json:"version"`
	Target     wireTarget `json:"target"`
	Replicas   int        `json:"replicas"`
	Previous   int        `json:"previous"`
	Reason     string     `json:"reason"`
	DecisionID string     `json:"decision_id"`
	Time       string     `json:"time"`
}

// Encode returns the JSON body for req:
//
//	{"version":"v1","target":{"name":"checkout","namespace":"shop","kind":"deployments.apps"},
//	 "replicas":5,"previous":3,"reason":"...","decision_id":"d-42","time":"2025-03-01T12:00:00.5Z"}
//
// namespace and kind are left out when empty; time is RFC 3339 with
// nanoseconds, in UTC. An invalid req returns an error wrapping
// [actuator.ErrInvalidRequest].
func Encode(req actuator.Request) ([]byte, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: encode: %w", err)
	}
	b, err := json.Marshal(wireRequest{
		Version:    Version,
		Target:     wireTarget(req.Target),
		Replicas:   req.Replicas,
		Previous:   req.Previous,
		Reason:     req.Reason,
		DecisionID: req.DecisionID,
		Time:       req.Time.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: encode: %w", err)
	}
	return b, nil
}

var (
	requestFields = map[string]bool{"version": true, "target": true, "replicas": true, "previous": true, "reason": false, "decision_id": true, "time": true}
	targetFields  = map[string]bool{"name": true, "namespace": false, "kind": false}
)

// Decode parses a body made by [Encode], strictly: it must be exactly one JSON
// object with exactly the documented field names (case-sensitive, no
// unknown, duplicate or null fields), version "v1", JSON numbers that are
// integers for replicas and previous, an RFC 3339 time, and it must describe a
// valid [actuator.Request]. Errors wrap [ErrMalformed].
func Decode(body []byte) (actuator.Request, error) {
	var req actuator.Request
	fields, err := object(body, requestFields)
	if err != nil {
		return req, err
	}
	var version, decisionID, ts string
	if err := field(fields, "version", &version); err != nil {
		return req, err
	}
	if version != Version {
		return req, fmt.Errorf("%w: version %q, want %q", ErrMalformed, version, Version)
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
		{fields, "decision_id", &decisionID},
		{fields, "time", &ts},
	} {
		if err := field(f.m, f.name, f.dst); err != nil {
			return req, err
		}
	}
	req.DecisionID = decisionID
	req.Time, err = time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return req, fmt.Errorf("%w: time is not RFC 3339", ErrMalformed)
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return req, nil
}

// object decodes exactly one JSON object into its raw fields, checking the
// field names against allowed (name → required).
func object(data []byte, allowed map[string]bool) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	fields := make(map[string]json.RawMessage, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
		}
		name, _ := tok.(string)
		if _, ok := allowed[name]; !ok {
			return nil, fmt.Errorf("%w: unknown field %q", ErrMalformed, name)
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrMalformed, name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
		}
		if string(raw) == "null" {
			return nil, fmt.Errorf("%w: field %q is null", ErrMalformed, name)
		}
		fields[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrMalformed)
	}
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		if _, ok := fields[name]; allowed[name] && !ok {
			return nil, fmt.Errorf("%w: missing field %q", ErrMalformed, name)
		}
	}
	return fields, nil
}

// field decodes fields[name], if present, into dst, which must be a pointer to
// a string or an int.
func field(fields map[string]json.RawMessage, name string, dst any) error {
	raw, ok := fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: field %q has the wrong type", ErrMalformed, name)
	}
	return nil
}
