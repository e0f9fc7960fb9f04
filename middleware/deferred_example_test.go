package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// A request of a deferrable route that the admission would shed is answered 202 with
// a Location; once capacity returns, a worker replays it and the Location gives its
// response.
func ExampleDeferrer() {
	adm, _ := middleware.NewAdmission(middleware.AdmissionConfig{})
	d, err := middleware.NewDeferrer(middleware.DeferConfig{
		Routes:        []middleware.DeferRoute{{Route: "/report", MaxPriority: 0}},
		RetryInterval: 10 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, _ := middleware.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "report ready")
	}), middleware.WithAdmission(adm), middleware.WithDeferrer(d))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	adm.Shed("*", 1, 0) // overload
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/report", nil))
	loc := rec.Header().Get("Location")
	fmt.Println(rec.Code, rec.Header().Get(middleware.DeferredHeader))

	adm.Shed("*", 0, 0) // capacity returns
	for d.Stats().Completed == 0 {
		time.Sleep(time.Millisecond)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, loc, nil))
	body, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, string(body))
	// Output:
	// 202 accepted
	// 200 report ready
}
