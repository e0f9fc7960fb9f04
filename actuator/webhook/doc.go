// Package webhook sends scale decisions as signed HTTP requests, and
// verifies and applies them on the receiving side.
//
// The sender, [Actuator], POSTs a versioned JSON body (see [Encode]):
//
//	{"version":"v1","target":{"name":"checkout","namespace":"shop"},"replicas":5,"previous":3,
//	 "reason":"p99 over budget","decision_id":"d-42","time":"2025-03-01T12:00:00Z"}
//
// The body carries no [actuator.Sequence]: it is version 1 of the body, the
// same the queue package's events carry as data, with the sequence beside it
// in attributes. A [Receiver] therefore orders nothing: it applies each
// signed request it verifies at most once, in the order requests arrive.
//
// with these headers:
//
//	Idempotency-Key: d-42
//	Autoscalelua-Signature: t=1740830400,v1=<64 lower-case hex digits>
//	Authorization: Bearer <token>   (optional, read from an environment variable or a file)
//
// Each Scale call is one POST. Network errors, timeouts, 409 (the receiver
// still applies an earlier attempt), 429 and 5xx are retryable errors, and a
// 409, 429 or 503 with a Retry-After header (seconds or an HTTP date) returns
// an error carrying that wait ([actuator.RetryAfter]); any other status is a
// permanent error. The scaling loop, the module's one retrier, retries with
// jittered exponential back-off, no sooner than a Retry-After asks, so one
// failing decision makes at most the loop's Actuation.Attempts POSTs.
//
// # Signature scheme
//
// The scheme is Stripe's, under our header name. v1 is the lower-case hex
// HMAC-SHA256, keyed with the shared secret, of the signed payload
//
//	<t>.<body>
//
// where t is the decimal Unix time in seconds, also sent as the header's t
// field, and body is the exact request body. A receiver recomputes the HMAC,
// compares it in constant time, and rejects timestamps more than a tolerance
// (default five minutes) from its own clock, which bounds replays; within the
// tolerance, replays are caught by the idempotency key, which the receiver
// keeps until the signature's timestamp plus the tolerance, so no copy of a
// request that could still verify is applied twice. A header may carry
// several v1 fields (for secret rotation) and fields with other names, which
// are ignored. To verify a captured request by hand:
//
//	t=1740830400   # from the header
//	printf '%s.%s' "$t" "$(cat body.json)" | openssl dgst -sha256 -hmac "$secret"
//
// and compare the digest with v1 (for the body {"version":"v1"}, t=1740830400
// and the secret s3cr3t it is ce9e0f44...c3735c3e8; see [ExampleSign]). Use a
// random secret of at least 32 bytes.
//
// # Receiving
//
// [Receiver] is an [net/http.Handler] that checks all of the above, decodes
// the body strictly ([Decode]), applies each idempotency key at most once,
// and calls any [actuator.Actuator]; see [Receiver] for the status codes,
// how long keys are kept, and the 503 it answers when it cannot keep more.
// Clients only ever see fixed texts. [VerifySignature] is there for handlers
// of your own.
//
// Serve it with [NewServer], or an [net/http.Server] with the timeouts
// NewServer documents: the receiver bounds the read of a body itself, but
// only the server can bound the headers', and without ReadHeaderTimeout a
// client that trickles its headers holds a connection open for ever.
//
// Example:
//
//	secret := []byte(os.Getenv("SCALER_SECRET"))
//	a, err := webhook.New("https://scaler.internal/scale", secret,
//		webhook.WithTokenFile("/var/run/secrets/scaler/token"),
//		webhook.WithTimeout(5*time.Second))
//	// ... give a to the scaling loop ...
//
//	// On the scaler's side:
//	rcv, err := webhook.NewReceiver(secret, myKubernetesActuator)
//	mux := http.NewServeMux()
//	mux.Handle("POST /scale", rcv)
//	srv := webhook.NewServer(":8443", mux)
//	err = srv.ListenAndServeTLS(certFile, keyFile)
package webhook
