package webhook

import (
	"errors"
	"fmt"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/internal/wire"
)

// Version is the version of the JSON body this package sends and accepts.
const Version = wire.Version

// ErrMalformed reports a request body that is not a valid version 1 scale
// request: not exactly one JSON object, an unknown or missing field, a wrong
// type, a wrong version, or a request that fails [actuator.Request.Validate].
var ErrMalformed = errors.New("webhook: malformed request body")

// Encode returns the JSON body for req:
//
//	{"version":"v1","target":{"name":"checkout","namespace":"shop","kind":"deployments.apps"},
//	 "replicas":5,"previous":3,"reason":"...","decision_id":"d-42","time":"2025-03-01T12:00:00.5Z"}
//
// namespace and kind are left out when empty; time is RFC 3339 with
// nanoseconds, in UTC. The same body is the data of the queue package's
// events. An invalid req returns an error wrapping
// [actuator.ErrInvalidRequest].
func Encode(req actuator.Request) ([]byte, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: encode: %w", err)
	}
	b, err := wire.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode: %w", err)
	}
	return b, nil
}

// Decode parses a body made by [Encode], strictly: it must be exactly one JSON
// object with exactly the documented field names (case-sensitive, no
// unknown, duplicate or null fields), version "v1", JSON numbers that are
// integers for replicas and previous, an RFC 3339 time, and it must describe a
// valid [actuator.Request]. Errors wrap [ErrMalformed].
func Decode(body []byte) (actuator.Request, error) {
	req, err := wire.Unmarshal(body)
	if err != nil {
		return req, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return req, nil
}
