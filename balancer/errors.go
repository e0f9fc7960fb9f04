package balancer

import "errors"

// Sentinel errors. Callers branch on them with [errors.Is]; the pool wraps them with
// details.
var (
	// ErrNoBackend means no backend can take the request: the pool is empty, every
	// backend is drained (weight 0), or every backend is unhealthy and panic routing
	// is off. The proxy answers it with 503 and a Retry-After header.
	ErrNoBackend = errors.New("balancer: no backend available")
	// ErrUnknownBackend means an id names no backend of the pool.
	ErrUnknownBackend = errors.New("balancer: unknown backend")
	// ErrInvalidEndpoint means an [Endpoint] given to [Pool.Update] is unusable: empty
	// or duplicate id, invalid URL, weight out of range.
	ErrInvalidEndpoint = errors.New("balancer: invalid endpoint")
	// ErrInvalidWeight means a weight given to [Pool.SetWeight] is negative or above
	// [MaxWeight].
	ErrInvalidWeight = errors.New("balancer: invalid weight")
	// ErrInvalidConfig means an option or setting is out of range.
	ErrInvalidConfig = errors.New("balancer: invalid config")
	// ErrEjectionLimit means an ejection was refused because it would eject more
	// than the maximum ejected percentage of the pool (see [Outlier]).
	ErrEjectionLimit = errors.New("balancer: ejection limit reached")
)
