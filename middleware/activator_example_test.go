package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// printScaler stands in for autoscale.Loop: it prints the wakes.
type printScaler struct{}

func (printScaler) Wake(target string, replicas int) error {
	fmt.Printf("wake %s: %d replica(s)\n", target, replicas)
	return nil
}

// A request for a target at zero is held, wakes the scaler, and is forwarded once a
// replica is ready.
func ExampleActivator() {
	act, err := middleware.NewActivator(printScaler{}, map[string]middleware.HoldConfig{
		"api": {Concurrency: 4, MaxQueue: 100, MaxWait: 10 * time.Second},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, _ := act.Handler("api", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "served")
	}))
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	for s, _ := act.Stats("api"); s.Waiting == 0; s, _ = act.Stats("api") {
		time.Sleep(time.Millisecond) // until the request is held
	}
	act.SetReady("api", 1) // from EndpointSlices, the pool or the actuator
	<-done
	fmt.Println(rec.Code, rec.Body.String(), rec.Header().Get(middleware.ColdStartHeader) != "")
	// Output:
	// wake api: 1 replica(s)
	// wake api: 0 replica(s)
	// 200 served true
}
