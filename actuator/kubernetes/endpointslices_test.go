package kubernetes_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/balancer"
)

func ptr[T any](v T) *T { return &v }

// ep is an endpoint of a slice: address, conditions (nil pointers for nil), pod, node, zone.
func ep(addr string, ready, serving, terminating *bool, pod string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating},
		NodeName:   ptr("node-" + pod),
		Zone:       ptr("zone-a"),
	}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return e
}

func slice(ns, name, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

var httpPort = []discoveryv1.EndpointPort{
	{Name: ptr("metrics"), Port: ptr[int32](9090), Protocol: ptr(corev1.ProtocolTCP)},
	{Name: ptr("http"), Port: ptr[int32](8080), Protocol: ptr(corev1.ProtocolTCP)},
}

func want(id, pod string) balancer.Endpoint {
	return balancer.Endpoint{
		ID: id, URL: "http://" + id,
		Labels: map[string]string{kubernetes.LabelZone: "zone-a", kubernetes.LabelNode: "node-" + pod, kubernetes.LabelPod: pod},
	}
}

// TestEndpointsFromSlices checks which endpoints are reported, as a table over the
// conditions of the EndpointSlice API.
func TestEndpointsFromSlices(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	svc := kubernetes.Service{Namespace: "shop", Name: "web", PortName: "http"}
	tests := []struct {
		name     string
		fallback bool
		slices   []*discoveryv1.EndpointSlice
		want     []balancer.Endpoint
	}{
		{"ready, nil conditions count as ready", false, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort, ep("10.0.0.2", yes, yes, no, "b"), ep("10.0.0.1", nil, nil, nil, "a")),
		}, []balancer.Endpoint{want("10.0.0.1:8080", "a"), want("10.0.0.2:8080", "b")}},
		{"not ready and terminating are left out", false, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort,
				ep("10.0.0.1", yes, yes, nil, "a"),
				ep("10.0.0.2", no, no, nil, "starting"),
				ep("10.0.0.3", no, yes, yes, "draining"),
				ep("10.0.0.4", no, no, yes, "dying"),
				ep("10.0.0.5", yes, yes, yes, "published-but-terminating")),
		}, []balancer.Endpoint{want("10.0.0.1:8080", "a")}},
		{"terminating fallback unused while one is ready", true, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort, ep("10.0.0.1", yes, yes, no, "a"), ep("10.0.0.3", no, yes, yes, "draining")),
		}, []balancer.Endpoint{want("10.0.0.1:8080", "a")}},
		{"terminating fallback when none is ready", true, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort, ep("10.0.0.2", no, no, nil, "starting"), ep("10.0.0.3", no, yes, yes, "draining"), ep("10.0.0.4", no, no, yes, "dying")),
		}, []balancer.Endpoint{want("10.0.0.3:8080", "draining")}},
		{"no fallback by default", false, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort, ep("10.0.0.3", no, yes, yes, "draining")),
		}, []balancer.Endpoint{}},
		{"several slices, duplicates merged, best state wins", false, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "web", httpPort, ep("10.0.0.1", no, no, nil, "a"), ep("10.0.0.2", yes, yes, nil, "b")),
			slice("shop", "s2", "web", httpPort, ep("10.0.0.1", yes, yes, nil, "a"), ep("10.0.0.3", yes, yes, nil, "c")),
		}, []balancer.Endpoint{want("10.0.0.1:8080", "a"), want("10.0.0.2:8080", "b"), want("10.0.0.3:8080", "c")}},
		{"other services, namespaces and ports are ignored", false, []*discoveryv1.EndpointSlice{
			slice("shop", "s1", "api", httpPort, ep("10.0.0.1", yes, yes, nil, "a")),
			slice("other", "s2", "web", httpPort, ep("10.0.0.2", yes, yes, nil, "b")),
			slice("shop", "s3", "web", []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr[int32](9000)}}, ep("10.0.0.3", yes, yes, nil, "c")),
			slice("shop", "s4", "web", []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080), Protocol: ptr(corev1.ProtocolUDP)}}, ep("10.0.0.4", yes, yes, nil, "d")),
			nil,
		}, []balancer.Endpoint{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []kubernetes.DiscoveryOption
			if tc.fallback {
				opts = append(opts, kubernetes.WithTerminatingFallback())
			}
			d := newSlices(t, svc, opts...)
			if diff := cmp.Diff(tc.want, d.Endpoints(tc.slices)); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointsSchemesAndAddresses(t *testing.T) {
	ports := []discoveryv1.EndpointPort{{Port: ptr[int32](443), AppProtocol: ptr("https")}} // unnamed port
	v6 := slice("shop", "s1", "web", ports, discoveryv1.Endpoint{Addresses: []string{"fd00::1", "fd00::2"}})
	d := newSlices(t, kubernetes.Service{Namespace: "shop", Name: "web"})
	got := d.Endpoints([]*discoveryv1.EndpointSlice{v6})
	wantEps := []balancer.Endpoint{{ID: "[fd00::1]:443", URL: "https://[fd00::1]:443", Labels: map[string]string{}}}
	if diff := cmp.Diff(wantEps, got); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	d = newSlices(t, kubernetes.Service{Namespace: "shop", Name: "web", Scheme: "http"})
	if got := d.Endpoints([]*discoveryv1.EndpointSlice{v6}); len(got) != 1 || got[0].URL != "http://[fd00::1]:443" {
		t.Errorf("an explicit scheme wins over appProtocol: %+v", got)
	}
}

func TestServiceValidate(t *testing.T) {
	err := kubernetes.Service{Scheme: "ftp", PortName: strings.Repeat("p", 64)}.Validate()
	for _, s := range []string{"service namespace", "service name", "port name", "scheme"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("Validate: %v, want it to report the %s", err, s)
		}
	}
	if _, err := kubernetes.NewEndpointSlices(nil, kubernetes.Service{Namespace: "a", Name: "b"}); err == nil {
		t.Error("NewEndpointSlices(nil client): no error")
	}
}

// newSlices returns a discovery over a client that points nowhere: for tests of
// Endpoints, which makes no request.
func newSlices(t *testing.T, svc kubernetes.Service, opts ...kubernetes.DiscoveryOption) *kubernetes.EndpointSlices {
	t.Helper()
	d, err := kubernetes.NewEndpointSlices(clientset.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), svc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEndpointSlicesFeedPool creates, updates and deletes EndpointSlices on the API
// server and checks that a balancer pool synced with the discovery follows.
func TestEndpointSlicesFeedPool(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	yes, no := ptr(true), ptr(false)
	d, err := kubernetes.NewEndpointSlices(e.client, kubernetes.Service{Namespace: e.ns, Name: "web", PortName: "http"})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	// Record every list the discovery reports, and feed it to the pool.
	var (
		mu      sync.Mutex
		updates [][]string
	)
	ids := func(eps []balancer.Endpoint) []string {
		out := []string{}
		for _, e := range eps {
			out = append(out, e.ID)
		}
		return out
	}
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- d.Watch(watchCtx, func(eps []balancer.Endpoint) error {
			mu.Lock()
			updates = append(updates, ids(eps))
			mu.Unlock()
			return pool.Update(eps)
		})
	}()
	poolIDs := func() []string {
		out := []string{}
		for _, b := range pool.Backends() {
			out = append(out, b.ID())
		}
		slices.Sort(out)
		return out
	}
	expect := func(what string, wantIDs ...string) {
		t.Helper()
		if wantIDs == nil {
			wantIDs = []string{}
		}
		eventually(t, 20*time.Second, what+": pool has "+strings.Join(wantIDs, ","), func() bool {
			return cmp.Equal(wantIDs, poolIDs())
		})
	}
	slicesAPI := e.client.DiscoveryV1().EndpointSlices(e.ns)
	eventually(t, 20*time.Second, "the synced, empty list is reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(updates) == 1
	})

	s1, err := slicesAPI.Create(ctx, slice(e.ns, "web-1", "web", httpPort,
		ep("10.0.0.1", yes, yes, nil, "a"), ep("10.0.0.2", no, no, nil, "b")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect("a slice with one ready endpoint", "10.0.0.1:8080")

	// Pod b becomes ready.
	s1.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: yes, Serving: yes}
	if s1, err = slicesAPI.Update(ctx, s1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("pod b ready", "10.0.0.1:8080", "10.0.0.2:8080")
	if b, ok := pool.Lookup("10.0.0.2:8080"); !ok || b.Label(kubernetes.LabelZone) != "zone-a" || b.Label(kubernetes.LabelNode) != "node-b" || b.Label(kubernetes.LabelPod) != "b" {
		t.Errorf("backend b's labels: %v", b.Labels())
	}

	// A second slice, and a slice of another Service that must not matter.
	if _, err := slicesAPI.Create(ctx, slice(e.ns, "web-2", "web", httpPort, ep("10.0.0.3", yes, yes, nil, "c")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slicesAPI.Create(ctx, slice(e.ns, "api-1", "api", httpPort, ep("10.0.0.9", yes, yes, nil, "z")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("a second slice", "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")

	// Pod a terminates: serving while it drains, but no longer ready.
	s1.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: no, Serving: yes, Terminating: yes}
	if _, err = slicesAPI.Update(ctx, s1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("pod a terminating", "10.0.0.2:8080", "10.0.0.3:8080")

	if err := slicesAPI.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("slice web-1 deleted", "10.0.0.3:8080")
	if err := slicesAPI.Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("every slice deleted")

	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Each update reports a change: no two consecutive lists are equal.
	for i := 1; i < len(updates); i++ {
		if slices.Equal(updates[i-1], updates[i]) {
			t.Errorf("updates %d and %d are the same list %v", i-1, i, updates[i])
		}
	}
	if len(updates) == 0 || len(updates[0]) != 0 {
		t.Errorf("the first update is %v, want the empty list reported once synced", updates)
	}
}

// TestEndpointSlicesPoolSync uses the balancer's own Sync, the way a gateway does.
func TestEndpointSlicesPoolSync(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := e.client.DiscoveryV1().EndpointSlices(e.ns).Create(ctx, slice(e.ns, "web-1", "web", httpPort, ep("10.0.0.1", nil, nil, nil, "a")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := kubernetes.NewEndpointSlices(e.client, kubernetes.Service{Namespace: e.ns, Name: "web", PortName: "http"})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	syncCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Sync(syncCtx, d) }()
	eventually(t, 20*time.Second, "the pool gets the endpoint", func() bool { return len(pool.Backends()) == 1 })
	res, err := pool.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Backend.URL().String(); got != "http://10.0.0.1:8080" {
		t.Errorf("picked %s", got)
	}
	res.Done(balancer.Outcome{})
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Sync returned %v", err)
	}
}
