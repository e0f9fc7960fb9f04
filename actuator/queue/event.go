package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/internal/wire"
	"github.com/cloudevents/sdk-go/v2/event"
)

// Event schema constants.
const (
	// EventType is the CloudEvents type of a scale decision.
	EventType = "io.autoscalelua.scale.v1"
	// DataVersion is the version field of the event data.
	DataVersion = wire.Version
	// ContentType is the media type of an encoded event (CloudEvents JSON
	// structured mode); brokers that carry headers send it as content-type.
	ContentType = "application/cloudevents+json"
	// MaxEventSize bounds what [Decode] accepts, in bytes.
	MaxEventSize = 64 << 10
)

// CloudEvents extension attributes carrying a decision's
// [actuator.Sequence], each a string of decimal digits (term, seq) or the
// stream's name. They sit outside the data, so a consumer that does not
// know them ignores them, and the data stays the webhook's body.
const (
	ExtTerm   = "autoscaleterm"
	ExtStream = "autoscalestream"
	ExtSeq    = "autoscaleseq"
)

// ErrPoison reports a message that is not a valid scale event: not a
// CloudEvents 1.0 JSON event, another type, data that is not a strict
// version 1 payload, or a request that fails validation. A poison message
// can never succeed, so consumers skip it instead of retrying.
var ErrPoison = errors.New("queue: poison message")

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
// The data is the same JSON body the webhook package sends. A request's
// [actuator.Sequence] travels in the extension attributes [ExtTerm],
// [ExtStream] and [ExtSeq], each left out when zero:
//
//	"autoscaleterm":"7","autoscalestream":"3f9a1c2e","autoscaleseq":"1042"
//
// Consumers that predate them ignore them (CloudEvents extensions) and
// order by time. source is a URI reference naming the producer, e.g.
// "/gateway/eu-1". An
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
	for _, x := range []struct {
		name, v string
		set     bool
	}{
		{ExtTerm, strconv.FormatUint(req.Seq.Term, 10), req.Seq.Term != 0},
		{ExtStream, req.Seq.Stream, req.Seq.Stream != ""},
		{ExtSeq, strconv.FormatUint(req.Seq.N, 10), req.Seq.N != 0},
	} {
		if x.set {
			e.SetExtension(x.name, x.v) // an error shows in e.Validate
		}
	}
	body, err := wire.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("queue: encode: %w", err)
	}
	// The body is JSON already: store it as is (SetData would base64-encode
	// a []byte, or marshal it once more).
	e.SetDataContentType(event.ApplicationJSON)
	e.DataEncoded = body
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
// equals the event id and which makes a valid [actuator.Request]. The
// sequence attributes, when present, must be strings: canonical decimal
// numbers above zero for [ExtTerm] and [ExtSeq], a valid stream name for
// [ExtStream] (see [actuator.Sequence]). Other CloudEvents extension
// attributes (for example traceparent) are allowed and ignored. Errors wrap
// [ErrPoison].
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
	req, err := wire.Unmarshal(e.Data())
	if err != nil {
		return req, fmt.Errorf("%w: data: %w", ErrPoison, err)
	}
	if req.DecisionID != e.ID() {
		return req, fmt.Errorf("%w: data decision_id %q differs from event id %q", ErrPoison, req.DecisionID, e.ID())
	}
	ext := e.Extensions()
	for _, x := range []struct {
		name string
		num  *uint64
		str  *string
	}{
		{ExtTerm, &req.Seq.Term, nil},
		{ExtStream, nil, &req.Seq.Stream},
		{ExtSeq, &req.Seq.N, nil},
	} {
		raw, ok := ext[x.name]
		if !ok {
			continue
		}
		v, ok := raw.(string)
		if !ok {
			return req, fmt.Errorf("%w: extension %s is not a string", ErrPoison, x.name)
		}
		if x.str != nil {
			*x.str = v
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != v {
			return req, fmt.Errorf("%w: extension %s is not a decimal number above zero", ErrPoison, x.name)
		}
		*x.num = n
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	return req, nil
}
