package queue

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
	"github.com/cloudevents/sdk-go/v2/event"
)

// Event schema constants.
const (
	// EventType is the CloudEvents type of a scale decision.
	EventType = "io.autoscalelua.scale.v1"
	// DataVersion is the version field of the event data.
	DataVersion = "v1"
	// ContentType is the media type of an encoded event (CloudEvents JSON
	// structured mode); brokers that carry headers send it as content-type.
	ContentType = "application/cloudevents+json"
	// MaxEventSize bounds what [Decode] accepts, in bytes.
	MaxEventSize = 64 << 10
)

// ErrPoison reports a message that is not a valid scale event: not a
// CloudEvents 1.0 JSON event, another type, data that is not a strict
// version 1 payload, or a request that fails validation. A poison message
// can never succeed, so consumers skip it instead of retrying.
var ErrPoison = errors.New("queue: poison message")

type wireTarget struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind,omitempty"`
}

type wireData struct {
	Version    string     `json:"version"`
	Target     wireTarget `json:"target"`
	Replicas   int        `json:"replicas"`
	Previous   int        `json:"previous"`
	Reason     string     `json:"reason"`
	DecisionID string     `json:"decision_id"`
	Time       string     `json:"time"`
}

// Encode returns req as a CloudEvents 1.0 event in the JSON structured
// format, built with the CloudEvents SDK:
//
//	{"specversion":"1.0","type":"io.autoscalelua.scale.v1","source":"<source>",
//	 "id":"<decision id>","time":"<decision time>","subject":"<target>",
//	 "datacontenttype":"application/json",
//	 "data":{"version":"v1","target":{"name":"checkout","namespace":"shop"},
//	         "replicas":5,"previous":3,"reason":"...","decision_id":"<decision id>",
//	         "time":"<decision time, RFC 3339 with nanoseconds>"}}
//
// source is a URI reference naming the producer, e.g. "/gateway/eu-1". An
// invalid req or source returns an error wrapping
// [actuator.ErrInvalidRequest].
func Encode(req actuator.Request, source string) ([]byte, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("queue: encode: %w", err)
	}
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(req.DecisionID)
	e.SetType(EventType)
	e.SetSource(source)
	e.SetTime(req.Time)
	e.SetSubject(req.Target.String())
	err := e.SetData(event.ApplicationJSON, wireData{
		Version:    DataVersion,
		Target:     wireTarget(req.Target),
		Replicas:   req.Replicas,
		Previous:   req.Previous,
		Reason:     req.Reason,
		DecisionID: req.DecisionID,
		Time:       req.Time.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("queue: encode: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("queue: encode: %w: %w", actuator.ErrInvalidRequest, err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("queue: encode: %w", err)
	}
	return b, nil
}

// Decode parses an event made by [Encode], strictly: specversion 1.0, type
// [EventType], a source, datacontenttype application/json, and data that is
// exactly one JSON object with exactly the documented fields (no unknown,
// duplicate or null fields, integer counts, version "v1") whose decision_id
// equals the event id and which makes a valid [actuator.Request]. CloudEvents
// extension attributes (for example traceparent) are allowed and ignored.
// Errors wrap [ErrPoison].
func Decode(data []byte) (actuator.Request, error) {
	var req actuator.Request
	if len(data) > MaxEventSize {
		return req, fmt.Errorf("%w: %d bytes, more than %d", ErrPoison, len(data), MaxEventSize)
	}
	var e event.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return req, fmt.Errorf("%w: not a CloudEvents JSON event: %w", ErrPoison, err)
	}
	switch {
	case e.SpecVersion() != event.CloudEventsVersionV1:
		return req, fmt.Errorf("%w: specversion %q, want %q", ErrPoison, e.SpecVersion(), event.CloudEventsVersionV1)
	case e.Type() != EventType:
		return req, fmt.Errorf("%w: type %q, want %q", ErrPoison, e.Type(), EventType)
	case e.DataContentType() != event.ApplicationJSON:
		return req, fmt.Errorf("%w: datacontenttype %q, want %q", ErrPoison, e.DataContentType(), event.ApplicationJSON)
	}
	if err := e.Validate(); err != nil {
		return req, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	req, err := decodeData(e.Data())
	if err != nil {
		return req, err
	}
	if req.DecisionID != e.ID() {
		return req, fmt.Errorf("%w: data decision_id %q differs from event id %q", ErrPoison, req.DecisionID, e.ID())
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	return req, nil
}

var (
	dataFields   = map[string]bool{"version": true, "target": true, "replicas": true, "previous": true, "reason": false, "decision_id": true, "time": true}
	targetFields = map[string]bool{"name": true, "namespace": false, "kind": false}
)

func decodeData(data []byte) (actuator.Request, error) {
	var req actuator.Request
	fields, err := object(data, dataFields)
	if err != nil {
		return req, err
	}
	var version, ts string
	if err := field(fields, "version", &version); err != nil {
		return req, err
	}
	if version != DataVersion {
		return req, fmt.Errorf("%w: data version %q, want %q", ErrPoison, version, DataVersion)
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
	req.Time, err = time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return req, fmt.Errorf("%w: data time is not RFC 3339", ErrPoison)
	}
	return req, nil
}

// object decodes exactly one JSON object into its raw fields, checking the
// field names against allowed (name → required).
func object(data []byte, allowed map[string]bool) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: data is not JSON", ErrPoison)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: data is not a JSON object", ErrPoison)
	}
	fields := make(map[string]json.RawMessage, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: data is not JSON", ErrPoison)
		}
		name, _ := tok.(string)
		if _, ok := allowed[name]; !ok {
			return nil, fmt.Errorf("%w: unknown data field %q", ErrPoison, name)
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("%w: duplicate data field %q", ErrPoison, name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: data is not JSON", ErrPoison)
		}
		if string(raw) == "null" {
			return nil, fmt.Errorf("%w: data field %q is null", ErrPoison, name)
		}
		fields[name] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: data is not JSON", ErrPoison)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data holds more than one JSON value", ErrPoison)
	}
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		if _, ok := fields[name]; allowed[name] && !ok {
			return nil, fmt.Errorf("%w: missing data field %q", ErrPoison, name)
		}
	}
	return fields, nil
}

func field(fields map[string]json.RawMessage, name string, dst any) error {
	raw, ok := fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: data field %q has the wrong type", ErrPoison, name)
	}
	return nil
}
