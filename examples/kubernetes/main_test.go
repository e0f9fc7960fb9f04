package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes/kubetest"
	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

var (
	cluster    *kubetest.Cluster
	clusterErr error
)

func TestMain(m *testing.M) {
	if dir := kubetest.BinDir(); dir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cluster, clusterErr = kubetest.Start(ctx, dir)
		cancel()
	}
	code := m.Run()
	if cluster != nil {
		_ = cluster.Stop()
	}
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needCluster(t *testing.T) clientset.Interface {
	t.Helper()
	if clusterErr != nil {
		t.Fatalf("the API server did not start: %v", clusterErr)
	}
	if cluster == nil {
		testenv.Missing(t, "kube-apiserver and etcd", kubetest.HowToGetBinaries)
	}
	return clientset.NewForConfigOrDie(cluster.Config())
}

// manifest decodes a YAML file of this folder into typed objects.
func manifest(t *testing.T, name string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// apply creates the objects on the API server; dryRun only validates them there.
func apply(t *testing.T, ctx context.Context, c clientset.Interface, dryRun bool, objs []runtime.Object) {
	t.Helper()
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.Role:
			_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.RoleBinding:
			_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
		case *appsv1.Deployment:
			_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
		case *corev1.Service:
			_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
		default:
			t.Fatalf("unexpected object %T in the manifests", o)
		}
		if err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGateway applies rbac.yaml as shipped, runs the gateway with the service
// account's token (so the shipped permissions are all it has), sends it a burst of
// slow requests, and checks that it leads, proxies to the endpoint of the Service's
// EndpointSlice, scales the Deployment up, and releases the Lease when stopped.
// gateway.yaml is validated by the API server with a dry-run create.
func TestGateway(t *testing.T) {
	c := needCluster(t)
	ctx, cancelAll := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelAll()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apply(t, ctx, c, false, manifest(t, "rbac.yaml"))
	apply(t, ctx, c, true, manifest(t, "gateway.yaml"))

	// The backend: holds every request until released.
	release := make(chan struct{})
	var served sync.WaitGroup
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/probe" {
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, "ok")
	}))
	defer backend.Close()
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(backend.URL, "http://"))
	port, _ := strconv.Atoi(portStr)

	replicas := int32(1)
	labels := map[string]string{"app": "web"}
	if _, err := c.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server refuses loopback addresses in EndpointSlices, and this machine
	// reaches only loopback: the slice names a pod IP, and the gateway's proxy dials
	// the backend on 127.0.0.1 when asked for that IP (the one stand-in of this test).
	const podIP = "10.244.0.7"
	name, p32 := "http", int32(port)
	var dialer net.Dialer
	transport := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == net.JoinHostPort(podIP, portStr) {
			a = net.JoinHostPort("127.0.0.1", portStr)
		}
		return dialer.DialContext(ctx, network, a)
	}}
	defer transport.CloseIdleConnections()
	if _, err := c.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p32}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{podIP}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	tr, err := c.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "autoscalelua-gateway", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	runCtx, stop := context.WithCancel(ctx)
	var out syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway output:\n%s", out.String())
		}
	})
	done := make(chan error, 1)
	go func() {
		done <- runWith(runCtx, []string{
			"--kubeconfig", kubeconfig, "--namespace", "shop", "--deployment", "web",
			"--listen", addr, "--identity", "gw-0", "--target-concurrency", "1", "--max", "5", "--tick", "100ms",
		}, &out, transport)
	}()
	eventually(t, 20*time.Second, "the gateway leads", func() bool { return strings.Contains(out.String(), "leading: true") })

	client := &http.Client{Timeout: time.Minute}
	eventually(t, 20*time.Second, "the gateway proxies to the endpoint", func() bool {
		resp, err := client.Get("http://" + addr + "/probe")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// 20 requests in flight through the gateway.
	var failures sync.Map
	for i := range 20 {
		served.Add(1)
		go func() {
			defer served.Done()
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				failures.Store(i, err.Error())
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures.Store(i, resp.Status)
			}
		}()
	}
	eventually(t, 30*time.Second, "the gateway scales the deployment up", func() bool {
		d, err := c.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas > 1
	})
	close(release)
	served.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("request %v: %v", k, v)
		return true
	})

	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	client.CloseIdleConnections()
	lease, err := c.CoordinationV1().Leases("shop").Get(ctx, "autoscalelua-gateway", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the Lease is still held by %q after the gateway stopped", *h)
	}
}

func TestParse(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "shop")
	f, err := parse([]string{"--deployment", "api"})
	if err != nil {
		t.Fatal(err)
	}
	if f.namespace != "shop" || f.service != "api" {
		t.Errorf("parse: namespace %q, service %q; want shop, api", f.namespace, f.service)
	}
	if _, err := parse([]string{"extra"}); err == nil {
		t.Error("parse accepted a positional argument")
	}
}
