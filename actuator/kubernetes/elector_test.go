package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func TestElectorConfigValidate(t *testing.T) {
	ok := kubernetes.ElectorConfig{Namespace: "ns", Name: "lease"}
	tests := []struct {
		name    string
		cfg     kubernetes.ElectorConfig
		wantErr []string // substrings; none means valid
	}{
		{"defaults", ok, nil},
		{"short", kubernetes.ElectorConfig{Namespace: "ns", Name: "l", LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}, nil},
		{"missing names", kubernetes.ElectorConfig{}, []string{"lease namespace", "lease name"}},
		{"fractional lease", kubernetes.ElectorConfig{Namespace: "ns", Name: "l", LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}, []string{"whole number of seconds"}},
		{"deadline past lease", kubernetes.ElectorConfig{Namespace: "ns", Name: "l", LeaseDuration: 2 * time.Second, RenewDeadline: 2 * time.Second}, []string{"renew deadline"}},
		{"retry too slow", kubernetes.ElectorConfig{Namespace: "ns", Name: "l", RetryPeriod: 9 * time.Second}, []string{"retry period"}},
		{"negative", kubernetes.ElectorConfig{Namespace: "ns", Name: "l", RetryPeriod: -time.Second}, []string{"negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: no error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	// The constructor reports the client and the configuration at once. (The client
	// below points nowhere; it is never called.)
	if _, err := kubernetes.NewElector(nil, kubernetes.ElectorConfig{}); err == nil || !strings.Contains(err.Error(), "nil client") || !strings.Contains(err.Error(), "lease name") {
		t.Errorf("NewElector(nil, {}) = %v", err)
	}
	e, err := kubernetes.NewElector(clientset.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), ok)
	if err != nil {
		t.Fatal(err)
	}
	if e.IsLeader() || e.Leader() != "" || e.Identity() == "" {
		t.Errorf("new elector: IsLeader %v, Leader %q, Identity %q", e.IsLeader(), e.Leader(), e.Identity())
	}
	err = e.Gate(actuator.Func(func(context.Context, actuator.Request) error { return nil })).Scale(context.Background(), request("ns", "", "web", 1))
	if !errors.Is(err, kubernetes.ErrNotLeader) || !actuator.IsPermanent(err) {
		t.Errorf("gated Scale before leading: %v, want a permanent ErrNotLeader", err)
	}
}

// interval is one actuator call, on the monotonic clock.
type interval struct {
	who        string
	start, end time.Time
}

// TestElectorHandOver runs two electors for one Lease, each driving an actuator
// through its Gate as fast as it can. When the leader's context is canceled, the
// other takes over well within the lease duration (the Lease is released, not left
// to expire), and the two replicas' actuations never overlap in time.
func TestElectorHandOver(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	ctx := testCtx(t)
	scaler := newActuator(t, e.cfg, kubernetes.WithNamespace(e.ns))
	cfg := kubernetes.ElectorConfig{
		Namespace: e.ns, Name: "gateway",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond,
	}

	var (
		mu    sync.Mutex
		calls []interval
	)
	type replica struct {
		name   string
		el     *kubernetes.Elector
		gate   actuator.Actuator
		cancel context.CancelFunc
		done   chan error
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	start := func(name string, replicas int) *replica {
		c := cfg
		c.Identity = name
		el, err := kubernetes.NewElector(e.client, c)
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{name: name, el: el, done: make(chan error, 1)}
		r.gate = el.Gate(actuator.Func(func(ctx context.Context, req actuator.Request) error {
			iv := interval{who: name, start: time.Now()}
			err := scaler.Scale(ctx, req)
			iv.end = time.Now()
			mu.Lock()
			calls = append(calls, iv)
			mu.Unlock()
			return err
		}))
		runCtx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.done <- el.Run(runCtx)
		}()
		go func() { // the replica's actuations: alternate between two counts
			defer wg.Done()
			for i := 0; workCtx.Err() == nil; i++ {
				err := r.gate.Scale(workCtx, request("", "", "web", replicas+i%2))
				if errors.Is(err, kubernetes.ErrNotLeader) {
					select {
					case <-workCtx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
		return r
	}
	a := start("replica-a", 2)
	b := start("replica-b", 4)

	var leader, follower *replica
	eventually(t, 15*time.Second, "a replica leads", func() bool {
		switch {
		case a.el.IsLeader():
			leader, follower = a, b
		case b.el.IsLeader():
			leader, follower = b, a
		}
		return leader != nil
	})
	// Let the leader actuate for a while; the follower must not.
	eventually(t, 10*time.Second, "the leader actuates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 5
	})
	if follower.el.IsLeader() {
		t.Fatal("both replicas lead")
	}
	eventually(t, 5*time.Second, "the follower sees who leads", func() bool { return follower.el.Leader() == leader.name })

	oldTerm := leader.el.Term()
	if oldTerm == 0 || follower.el.Term() != 0 {
		t.Errorf("terms: leader %d, follower %d; want the leader's above 0 and the follower's 0", oldTerm, follower.el.Term())
	}

	canceled := time.Now()
	leader.cancel()
	if err := <-leader.done; !errors.Is(err, context.Canceled) {
		t.Errorf("the old leader's Run returned %v, want context.Canceled", err)
	}
	if leader.el.IsLeader() {
		t.Error("the old leader still leads after Run returned")
	}
	eventually(t, cfg.LeaseDuration, "the follower takes over within the lease duration", follower.el.IsLeader)
	if newTerm := follower.el.Term(); newTerm <= oldTerm {
		t.Errorf("the new leader's term %d is not above the old leader's %d", newTerm, oldTerm)
	}
	if leader.el.Term() != 0 {
		t.Errorf("the old leader's term is %d after it stopped, want 0", leader.el.Term())
	}
	t.Logf("takeover %v after cancel (lease duration %v)", time.Since(canceled).Round(time.Millisecond), cfg.LeaseDuration)
	eventually(t, 10*time.Second, "the new leader actuates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls[len(calls)-1].who == follower.name
	})
	lease, err := e.client.CoordinationV1().Leases(e.ns).Get(ctx, "gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := *lease.Spec.HolderIdentity; got != follower.name {
		t.Errorf("lease holder %q, want %q", got, follower.name)
	}

	stopWork()
	follower.cancel()
	if err := <-follower.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	wg.Wait()
	// Released on cancel: the Lease is free.
	lease, err = e.client.CoordinationV1().Leases(e.ns).Get(ctx, "gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %q after both replicas stopped", *h)
	}

	// No call of one replica overlaps a call of the other, and the hand-over happens
	// once: every call of the old leader ends before the first of the new one starts.
	var lastOld, firstNew time.Time
	for _, c := range calls {
		switch c.who {
		case leader.name:
			if c.end.After(lastOld) {
				lastOld = c.end
			}
		case follower.name:
			if firstNew.IsZero() || c.start.Before(firstNew) {
				firstNew = c.start
			}
		}
	}
	if !lastOld.Before(firstNew) {
		t.Errorf("actuations overlap: the old leader's last call ended %v after the new leader's first began", lastOld.Sub(firstNew))
	}
	t.Logf("%d actuations; gap between leaders %v", len(calls), firstNew.Sub(lastOld).Round(time.Millisecond))
}

func TestElectorRunTwice(t *testing.T) {
	e := newEnv(t)
	el, err := kubernetes.NewElector(e.client, kubernetes.ElectorConfig{Namespace: e.ns, Name: "once"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- el.Run(ctx) }()
	eventually(t, 15*time.Second, "the only replica leads", el.IsLeader)
	if err := el.Run(ctx); !errors.Is(err, kubernetes.ErrElectorRunning) {
		t.Errorf("second Run: %v, want ErrElectorRunning", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}

// TestElectorStaleRenewal: a leader whose last successful renewal started
// RenewDeadline ago no longer claims to lead, even before client-go gives up, and
// leads again after its next renewal.
func TestElectorStaleRenewal(t *testing.T) {
	e := newEnv(t)
	clock := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	cfg := kubernetes.ElectorConfig{Namespace: e.ns, Name: "stale", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	el, err := kubernetes.NewElector(e.client, cfg, kubernetes.WithElectorClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- el.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	eventually(t, 15*time.Second, "the only replica leads", el.IsLeader)
	clock.Advance(cfg.RenewDeadline)
	if el.IsLeader() {
		t.Error("leads with a renewal RenewDeadline old")
	}
	var scaled bool
	err = el.Gate(actuator.Func(func(context.Context, actuator.Request) error { scaled = true; return nil })).Scale(ctx, request(e.ns, "", "web", 1))
	if !errors.Is(err, kubernetes.ErrNotLeader) || scaled {
		t.Errorf("gated Scale with a stale renewal: %v (called: %v), want ErrNotLeader", err, scaled)
	}
	eventually(t, 3*cfg.RetryPeriod, "leads again after the next renewal", el.IsLeader)
}
