package webhook

import (
	"net/http"
	"time"
)

// Timeouts and limits of [NewServer].
const (
	// ServerReadHeaderTimeout bounds the time to read a request's headers:
	// what stops a client that trickles them (slow loris).
	ServerReadHeaderTimeout = 5 * time.Second
	// ServerReadTimeout bounds the time to read a whole request, headers
	// and body.
	ServerReadTimeout = 10 * time.Second
	// ServerWriteTimeout bounds the time from the end of the headers' read
	// to the end of the response's write, the actuator's call included:
	// keep it above the longest apply (a Kubernetes scale takes well under
	// a second).
	ServerWriteTimeout = time.Minute
	// ServerIdleTimeout bounds how long a keep-alive connection waits for
	// its next request.
	ServerIdleTimeout = 2 * time.Minute
	// ServerMaxHeaderBytes bounds a request's headers; a signed request
	// needs well under 2 KiB.
	ServerMaxHeaderBytes = 64 << 10
)

// NewServer returns an [http.Server] for a [Receiver] (h is the receiver, or
// a mux in front of it) listening on addr, with the timeouts a host must set
// so that no client can hold a connection open by sending slowly:
// ReadHeaderTimeout [ServerReadHeaderTimeout], ReadTimeout
// [ServerReadTimeout], WriteTimeout [ServerWriteTimeout], IdleTimeout
// [ServerIdleTimeout] and MaxHeaderBytes [ServerMaxHeaderBytes]. Change the
// fields before serving to tune them; keep every timeout positive.
//
// Start it with ListenAndServe, ListenAndServeTLS or Serve, and stop it with
// Shutdown, as any [http.Server].
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ServerReadHeaderTimeout,
		ReadTimeout:       ServerReadTimeout,
		WriteTimeout:      ServerWriteTimeout,
		IdleTimeout:       ServerIdleTimeout,
		MaxHeaderBytes:    ServerMaxHeaderBytes,
	}
}
