package webhook_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/webhook"
)

func ExampleNew() {
	secret := []byte("a shared secret of 32 bytes or more")

	// The scaler's side: verify, then apply with any actuator.
	applied := actuator.Func(func(_ context.Context, req actuator.Request) error {
		fmt.Printf("scaler: %s to %d (%s)\n", req.Target, req.Replicas, req.DecisionID)
		return nil
	})
	rcv, err := webhook.NewReceiver(secret, applied)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	// The gateway's side: the scaling loop calls Scale.
	a, err := webhook.New(srv.URL+"/scale", secret, webhook.WithTimeout(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.CloseIdleConnections()
	req := actuator.Request{
		Target: actuator.Target{Name: "checkout", Namespace: "shop"}, Replicas: 5, Previous: 3,
		Reason: "p99 over budget", DecisionID: "d-42", Time: time.Now(),
	}
	fmt.Println(a.Scale(context.Background(), req))
	// A retry of the same decision is answered without applying it again.
	fmt.Println(a.Scale(context.Background(), req))
	// Output:
	// scaler: shop/checkout to 5 (d-42)
	// <nil>
	// <nil>
}

func ExampleSign() {
	body := []byte(`{"version":"v1"}`)
	h := webhook.Sign([]byte("s3cr3t"), body, time.Unix(1740830400, 0))
	fmt.Println(h)
	// Check it as a receiver would, five minutes later.
	fmt.Println(webhook.VerifySignature([]byte("s3cr3t"), h, body, time.Unix(1740830700, 0), 5*time.Minute))
	// Output:
	// t=1740830400,v1=ce9e0f44897a4569fd2ce4a2409b90a38f3c782b6124a4e7bd0ee86c3735c3e8
	// <nil>
}
