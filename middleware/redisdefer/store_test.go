package redisdefer

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/middleware"
)

var t0 = time.Unix(1_700_000_000, 0)

func newStore(t *testing.T, srv *redistest.Server, cfg Config) *Store {
	t.Helper()
	s, err := New(srv.Client(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func req(id string, body int) middleware.DeferredRequest {
	return middleware.DeferredRequest{ID: id, Tenant: "acme", Method: "GET", URL: "/",
		Header: http.Header{"X-A": {"b"}}, Body: make([]byte, body), Accepted: t0}
}

func TestConfigErrors(t *testing.T) {
	_, err := New(nil, Config{MaxRequests: -1, MaxBytes: -1, RunTimeout: -1})
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"nil redis client", "max requests", "max bytes", "run timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not reported in %v", want, err)
		}
	}
}

// The store's life cycle and bounds are the memory store's (TestMemoryStoreBounds in
// package middleware, ported): a request counts from Put until its result is swept,
// its body and headers only until claimed.
func TestBounds(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, redistest.Start(t), Config{MaxRequests: 10, MaxBytes: 100})
	r := req("a", 50)
	r.Header = nil
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, req("b", 50)); !errors.Is(err, middleware.ErrStoreFull) {
		t.Fatalf("over the bytes: %v", err)
	}
	if err := s.Put(ctx, req("a", 1)); err == nil || errors.Is(err, middleware.ErrStoreFull) {
		t.Fatalf("duplicate id: %v", err)
	}
	got, ok, err := s.Claim(ctx)
	if !ok || err != nil || got.ID != "a" || len(got.Body) != 50 || got.Tenant != "acme" || !got.Accepted.Equal(t0) {
		t.Fatalf("claim: %+v %v %v", got, ok, err)
	}
	if _, ok, _ := s.Claim(ctx); ok {
		t.Fatal("claimed twice")
	}
	if e, ok, err := s.Get(ctx, "a"); !ok || err != nil || e.State != middleware.DeferredRunning || e.Tenant != "acme" {
		t.Fatalf("get while running: %+v %v %v", e, ok, err)
	}
	res := middleware.DeferredResult{Status: 201, Header: http.Header{"X-R": {"1"}}, Body: make([]byte, 10), Done: t0}
	res.Header = nil
	if err := s.Complete(ctx, "a", res, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "a", middleware.DeferredResult{}, t0); err == nil {
		t.Error("completed twice")
	}
	if err := s.Complete(ctx, "nope", middleware.DeferredResult{}, t0); err == nil {
		t.Error("completed an unknown id")
	}
	e, ok, err := s.Get(ctx, "a")
	if !ok || err != nil || e.State != middleware.DeferredDone || e.Result.Status != 201 || len(e.Result.Body) != 10 || !e.Expires.Equal(t0) {
		t.Fatalf("get when done: %+v %v %v", e, ok, err)
	}
	if n, b, _ := s.Len(ctx); n != 1 || b != 14 { // "GET" + "/" + 10
		t.Errorf("len %d bytes %d, want 1 and 14", n, b)
	}
	if n, _ := s.Sweep(ctx, t0.Add(-time.Second)); n != 0 {
		t.Errorf("swept %d before expiry", n)
	}
	if n, _ := s.Sweep(ctx, t0); n != 1 {
		t.Errorf("swept %d at expiry, want 1", n)
	}
	if n, b, _ := s.Len(ctx); n != 0 || b != 0 {
		t.Errorf("after sweep: %d %d", n, b)
	}
	if _, ok, err := s.Get(ctx, "a"); ok || err != nil {
		t.Errorf("get after sweep: %v %v", ok, err)
	}
	for i := range 10 {
		r := req(strconv.Itoa(i), 0)
		r.Header = nil
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, req("x", 0)); !errors.Is(err, middleware.ErrStoreFull) {
		t.Errorf("over the count: %v", err)
	}
	for i := range 10 { // first in, first out
		if got, _, _ := s.Claim(ctx); got.ID != strconv.Itoa(i) {
			t.Fatalf("claim %d: %+v", i, got)
		}
	}
}

// Pending requests outlive the process that stored them: a new store on the same
// Redis (a restarted gateway, another replica) claims them in order; a store of
// another prefix sees none.
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	a := newStore(t, srv, Config{})
	for i := range 3 {
		if err := a.Put(ctx, req(strconv.Itoa(i), 5)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := newStore(t, srv, Config{Prefix: "other"}).Claim(ctx); ok {
		t.Error("a store of another prefix claimed a request")
	}
	b := newStore(t, srv, Config{})
	for i := range 3 {
		got, ok, err := b.Claim(ctx)
		if !ok || err != nil || got.ID != strconv.Itoa(i) || len(got.Body) != 5 || got.Header.Get("X-A") != "b" {
			t.Fatalf("claim %d after restart: %+v %v %v", i, got, ok, err)
		}
	}
}

// With a RunTimeout, a request claimed and never completed (its gateway died) is
// offered again by Sweep, body and all: at least once. The late Complete of the first
// claim and the second claim's cannot both win. Without one it stays running.
func TestRunTimeoutOffersAgain(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := newStore(t, srv, Config{RunTimeout: time.Millisecond})
	if err := s.Put(ctx, req("a", 7)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Claim(ctx); !ok {
		t.Fatal("no claim")
	}
	time.Sleep(20 * time.Millisecond) // past the run timeout on Redis's clock
	if _, err := s.Sweep(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.OfferedAgain != 1 {
		t.Fatalf("stats %+v, want one request offered again", st)
	}
	got, ok, err := s.Claim(ctx)
	if !ok || err != nil || got.ID != "a" || len(got.Body) != 7 {
		t.Fatalf("second claim: %+v %v %v", got, ok, err)
	}
	won := 0
	for range 2 {
		if s.Complete(ctx, "a", middleware.DeferredResult{Status: 200}, t0.Add(time.Hour)) == nil {
			won++
		}
	}
	if won != 1 {
		t.Errorf("%d completions took, want 1", won)
	}
	if n, b, _ := s.Len(ctx); n != 1 || b != 4 { // the kept "GET" + "/"
		t.Errorf("len %d bytes %d, want 1 and 4", n, b)
	}

	once := newStore(t, srv, Config{Prefix: "once"})
	if err := once.Put(ctx, req("b", 1)); err != nil {
		t.Fatal(err)
	}
	once.Claim(ctx)
	time.Sleep(20 * time.Millisecond)
	once.Sweep(ctx, t0)
	if _, ok, _ := once.Claim(ctx); ok || once.Stats().OfferedAgain != 0 {
		t.Error("without a run timeout a running request was offered again")
	}
}

// Bad input: an entry of a newer format, wrong types under the store's keys, a
// flushed script cache, a Redis that is gone. Each is an error, never a wrong answer.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client()
	s := newStore(t, srv, Config{})

	c.HSet(ctx, DefaultPrefix+":e:new", "state", "2", "tenant", "acme", "v", "99")
	if _, _, err := s.Get(ctx, "new"); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("get of a newer entry: %v, want ErrNewerFormat", err)
	}
	c.HSet(ctx, DefaultPrefix+":e:newp", "state", "0", "req", "{}", "size", "0", "kept", "0", "v", "99")
	c.RPush(ctx, DefaultPrefix+":pending", "newp")
	if _, _, err := s.Claim(ctx); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("claim of a newer entry: %v, want ErrNewerFormat", err)
	}
	if n, _ := c.LLen(ctx, DefaultPrefix+":pending").Result(); n != 1 {
		t.Errorf("the newer entry left the pending list (%d left)", n)
	}
	c.Del(ctx, DefaultPrefix+":pending")
	c.HSet(ctx, DefaultPrefix+":e:bad", "state", "7")
	if _, _, err := s.Get(ctx, "bad"); err == nil {
		t.Error("a bad state read as an entry")
	}
	c.Set(ctx, DefaultPrefix+":e:str", "not a hash", 0)
	if _, _, err := s.Get(ctx, "str"); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("get of a wrong type: %v", err)
	}

	c.Set(ctx, DefaultPrefix+":meta", "not a hash", 0)
	if err := s.Put(ctx, req("m", 1)); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("put with a wrong type under meta: %v", err)
	}
	c.Del(ctx, DefaultPrefix+":meta")

	c.ScriptFlush(ctx)
	if err := s.Put(ctx, req("f", 1)); err != nil {
		t.Errorf("put after SCRIPT FLUSH: %v", err)
	}
	if got, ok, err := s.Claim(ctx); !ok || err != nil || got.ID != "f" {
		t.Errorf("claim after SCRIPT FLUSH: %+v %v %v", got, ok, err)
	}

	srv.Kill()
	if err := s.Put(ctx, req("k", 1)); err == nil {
		t.Error("put with redis gone succeeded")
	}
	if _, _, err := s.Claim(ctx); err == nil {
		t.Error("claim with redis gone succeeded")
	}
	if _, _, err := s.Get(ctx, "f"); err == nil {
		t.Error("get with redis gone succeeded")
	}
	if _, err := s.Sweep(ctx, t0); err == nil {
		t.Error("sweep with redis gone succeeded")
	}
}
