package kubernetes_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
)

func request(ns, kind, name string, replicas int) actuator.Request {
	return actuator.Request{
		Target:     actuator.Target{Namespace: ns, Kind: kind, Name: name},
		Replicas:   replicas,
		Previous:   -1,
		DecisionID: "d-1",
		Time:       time.Unix(1_700_000_000, 0),
	}
}

func newActuator(t *testing.T, cfg *rest.Config, opts ...kubernetes.Option) *kubernetes.Actuator {
	t.Helper()
	a, err := kubernetes.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestScaleThroughSubresource scales a Deployment and a StatefulSet through /scale,
// naming their kinds the ways kubectl accepts, reads spec.replicas back from the
// objects themselves, and checks that asking again for the same count writes nothing.
func TestScaleThroughSubresource(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	e.statefulSet(t, "db", 1)
	ctx := testCtx(t)
	a := newActuator(t, e.cfg, kubernetes.WithNamespace(e.ns))

	readDeploy := func(name string) int32 { return e.deploymentReplicas(t, name) }
	readSts := func(name string) int32 {
		s, err := e.client.AppsV1().StatefulSets(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *s.Spec.Replicas
	}
	tests := []struct {
		kind, name string
		read       func(string) int32
	}{
		{"", "web", readDeploy}, // the default kind, deployments.apps
		{"deployments.apps", "web", readDeploy},
		{"Deployment", "web", readDeploy},
		{"deploy", "web", readDeploy},
		{"statefulsets.apps", "db", readSts},
		{"sts", "db", readSts},
	}
	for i, tc := range tests {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			want := i + 2
			before := a.Stats()
			if err := a.Scale(ctx, request("", tc.kind, tc.name, want)); err != nil {
				t.Fatal(err)
			}
			if got := tc.read(tc.name); got != int32(want) {
				t.Errorf("spec.replicas = %d, want %d", got, want)
			}
			got, err := a.Replicas(ctx, actuator.Target{Kind: tc.kind, Name: tc.name})
			if err != nil || got != want {
				t.Errorf("Replicas = %d, %v; want %d", got, err, want)
			}
			// The same request again is a no-op: no write.
			if err := a.Scale(ctx, request(e.ns, tc.kind, tc.name, want)); err != nil {
				t.Fatal(err)
			}
			after := a.Stats()
			if d := cmp.Diff(kubernetes.Stats{Writes: before.Writes + 1, Unchanged: before.Unchanged + 1, Conflicts: before.Conflicts}, after); d != "" {
				t.Errorf("stats (-want +got):\n%s", d)
			}
		})
	}
	st, err := a.Status(ctx, actuator.Target{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 5 || st.Selector != "app=web" {
		t.Errorf("Status = %+v, want Desired 5, Selector app=web", st)
	}
}

// TestScaleRetriesConflict makes the server answer the first update with a real 409:
// between the actuator's read and its write, another client changes the Deployment.
func TestScaleRetriesConflict(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	ctx := testCtx(t)
	var puts, interfered atomic.Int32
	cfg := rest.CopyConfig(e.cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/deployments/web/scale") {
				puts.Add(1)
				if interfered.Add(1) == 1 {
					// Someone else changes the object: the resourceVersion the actuator
					// read is now stale.
					d, err := e.client.AppsV1().Deployments(e.ns).Get(r.Context(), "web", metav1.GetOptions{})
					if err != nil {
						return nil, err
					}
					d.Annotations = map[string]string{"touched": "yes"}
					if _, err := e.client.AppsV1().Deployments(e.ns).Update(r.Context(), d, metav1.UpdateOptions{}); err != nil {
						return nil, err
					}
				}
			}
			return rt.RoundTrip(r)
		})
	}
	a := newActuator(t, cfg, kubernetes.WithNamespace(e.ns))
	if err := a.Scale(ctx, request("", "", "web", 4)); err != nil {
		t.Fatal(err)
	}
	if got := e.deploymentReplicas(t, "web"); got != 4 {
		t.Errorf("spec.replicas = %d, want 4", got)
	}
	if d := cmp.Diff(kubernetes.Stats{Writes: 1, Conflicts: 1}, a.Stats()); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if puts.Load() != 2 {
		t.Errorf("%d PUTs, want 2 (a conflict and its retry)", puts.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestLeastPrivilege uses a service account token whose only grant is a Role allowing
// get, update and patch on deployments/scale in one namespace: the actuator scales
// there, and gets a clear, permanent forbidden error elsewhere.
func TestLeastPrivilege(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	e.deployment(t, "web", 1)
	e.statefulSet(t, "db", 1)
	other.deployment(t, "web", 1)
	ctx := testCtx(t)

	a := newActuator(t, cluster.ConfigForToken(e.token(t, "scaler", "get", "update", "patch")))

	if err := a.Scale(ctx, request(e.ns, "", "web", 3)); err != nil {
		t.Fatalf("scale in the granted namespace: %v", err)
	}
	if got := e.deploymentReplicas(t, "web"); got != 3 {
		t.Errorf("spec.replicas = %d, want 3", got)
	}

	for _, tc := range []struct {
		name      string
		req       actuator.Request
		wantInMsg []string
	}{
		{"other namespace", request(other.ns, "", "web", 3), []string{`"get"`, "deployments/scale", "API group apps", other.ns}},
		{"other kind", request(e.ns, "statefulsets.apps", "db", 3), []string{`"get"`, "statefulsets/scale", e.ns}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Scale(ctx, tc.req)
			if !errors.Is(err, kubernetes.ErrForbidden) || !actuator.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent ErrForbidden", err)
			}
			t.Log(err)
			for _, s := range tc.wantInMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
	if got := other.deploymentReplicas(t, "web"); got != 1 {
		t.Errorf("the forbidden deployment has %d replicas, want 1", got)
	}

	// A token that may only read: Scale names the missing verb, update; reading works.
	reader := newActuator(t, cluster.ConfigForToken(e.token(t, "reader", "get")))
	err := reader.Scale(ctx, request(e.ns, "", "web", 5))
	if !errors.Is(err, kubernetes.ErrForbidden) || !strings.Contains(err.Error(), `"update"`) {
		t.Errorf("Scale with get only: %v, want ErrForbidden naming \"update\"", err)
	}
	if n, err := reader.Replicas(ctx, actuator.Target{Namespace: e.ns, Name: "web"}); err != nil || n != 3 {
		t.Errorf("Replicas with get only = %d, %v; want 3", n, err)
	}
}

// token returns a service account token whose only grant is a Role allowing verbs on
// deployments/scale in e's namespace.
func (e *env) token(t *testing.T, name string, verbs ...string) string {
	t.Helper()
	ctx := testCtx(t)
	if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RbacV1().Roles(e.ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: verbs}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RbacV1().RoleBindings(e.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: e.ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestScaleErrors checks the errors callers branch on.
func TestScaleErrors(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	if _, err := e.client.CoreV1().ConfigMaps(e.ns).Create(testCtx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	a := newActuator(t, e.cfg, kubernetes.WithNamespace(e.ns))
	tests := []struct {
		name string
		req  actuator.Request
		want []error
	}{
		{"missing object", request("", "", "nope", 2), []error{actuator.ErrUnknownTarget}},
		{"missing namespace", request("no-such-namespace", "", "web", 2), []error{actuator.ErrUnknownTarget}},
		{"unknown kind", request("", "widgets.example.com", "web", 2), []error{kubernetes.ErrUnknownKind, actuator.ErrInvalidRequest}},
		{"kind without /scale", request("", "configmaps", "cm", 2), []error{kubernetes.ErrNotScalable, actuator.ErrInvalidRequest}},
		{"malformed kind", request("", "apps/v1/deployments", "web", 2), []error{actuator.ErrInvalidRequest}},
		{"negative replicas", request("", "", "web", -1), []error{actuator.ErrInvalidRequest}},
		{"too many replicas", request("", "", "web", 1<<40), []error{actuator.ErrInvalidRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Scale(ctx, tc.req)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want it to wrap %v", err, w)
				}
			}
			if !actuator.IsPermanent(err) {
				t.Errorf("err = %v is not permanent", err)
			}
		})
	}
	if _, err := a.Replicas(ctx, actuator.Target{Name: "nope"}); !errors.Is(err, actuator.ErrUnknownTarget) {
		t.Errorf("Replicas of a missing object: %v, want ErrUnknownTarget", err)
	}
	if got := e.deploymentReplicas(t, "web"); got != 1 {
		t.Errorf("web has %d replicas after failed requests, want 1", got)
	}
}

// TestScaleHonoursDeadline stalls the API server's answers: Scale returns when its
// context's deadline passes, with an error that says so and is retryable.
func TestScaleHonoursDeadline(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	cfg := rest.CopyConfig(e.cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/scale") {
				<-r.Context().Done() // a server that never answers
				return nil, r.Context().Err()
			}
			return rt.RoundTrip(r)
		})
	}
	a := newActuator(t, cfg, kubernetes.WithNamespace(e.ns))
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Scale(ctx, request("", "", "web", 2))
	if !errors.Is(err, context.DeadlineExceeded) || actuator.IsPermanent(err) {
		t.Errorf("err = %v, want a retryable context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Scale took %v past a 300ms deadline", took)
	}
}

// TestScaleCustomResource scales a custom resource with a /scale subresource, shaped
// like Argo Rollouts, whose CRD is installed after the actuator has cached discovery.
func TestScaleCustomResource(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	ctx := testCtx(t)
	a := newActuator(t, e.cfg, kubernetes.WithNamespace(e.ns))
	if err := a.Scale(ctx, request("", "", "web", 2)); err != nil { // fills the discovery cache
		t.Fatal(err)
	}

	dyn := dynamic.NewForConfigOrDie(e.cfg)
	group := strings.ReplaceAll(e.ns, "-", "") + ".argoproj.io" // CRDs are cluster-wide: one group per test namespace
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "rollouts." + group},
		"spec": map[string]any{
			"group": group,
			"scope": "Namespaced",
			"names": map[string]any{"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "listKind": "RolloutList"},
			"versions": []any{map[string]any{
				"name": "v1alpha1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec": map[string]any{"type": "object", "properties": map[string]any{
							"replicas": map[string]any{"type": "integer"},
							"selector": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
						}},
						"status": map[string]any{"type": "object", "properties": map[string]any{
							"replicas": map[string]any{"type": "integer"},
							"selector": map[string]any{"type": "string"},
						}},
					},
				}},
				"subresources": map[string]any{"scale": map[string]any{
					"specReplicasPath":   ".spec.replicas",
					"statusReplicasPath": ".status.replicas",
					"labelSelectorPath":  ".status.selector",
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(crdGVR).Delete(context.Background(), "rollouts."+group, metav1.DeleteOptions{})
	})
	rollouts := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1alpha1", Resource: "rollouts"}).Namespace(e.ns)
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": "canary"},
		"spec":       map[string]any{"replicas": int64(1)},
	}}
	// The CRD is served a moment after it is created.
	eventually(t, 30*time.Second, "the Rollout CRD is served", func() bool {
		_, err := rollouts.Create(ctx, ro, metav1.CreateOptions{})
		return err == nil
	})

	if err := a.Scale(ctx, request("", "rollouts."+group, "canary", 7)); err != nil {
		t.Fatal(err)
	}
	got, err := rollouts.Get(ctx, "canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); n != 7 {
		t.Errorf("rollout spec.replicas = %d, want 7", n)
	}
	if n, err := a.Replicas(ctx, actuator.Target{Kind: "rollout." + group, Name: "canary"}); err != nil || n != 7 {
		t.Errorf("Replicas = %d, %v; want 7", n, err)
	}
}

// TestConfigHelpers reads a kubeconfig and checks the in-cluster helper outside a pod.
func TestConfigHelpers(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(path, ""); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := kubernetes.InClusterConfig(); !errors.Is(err, kubernetes.ErrNotInCluster) {
		t.Errorf("InClusterConfig outside a pod: %v, want ErrNotInCluster", err)
	}
	t.Setenv("KUBECONFIG", path)
	for _, tc := range []struct {
		name string
		get  func() (*rest.Config, error)
	}{
		{"KubeconfigConfig(path)", func() (*rest.Config, error) { return kubernetes.KubeconfigConfig(path, "") }},
		{"KubeconfigConfig(path, context)", func() (*rest.Config, error) { return kubernetes.KubeconfigConfig(path, "kubetest") }},
		{"Config from $KUBECONFIG", func() (*rest.Config, error) { return kubernetes.Config("", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.get()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := clientset.NewForConfigOrDie(cfg).AppsV1().Deployments(e.ns).Get(testCtx(t), "web", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := kubernetes.KubeconfigConfig(path, "no-such-context"); err == nil {
		t.Error("KubeconfigConfig with an unknown context: no error")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := kubernetes.New(nil); err == nil {
		t.Error("New(nil): no error")
	}
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	_, err := kubernetes.New(cfg, kubernetes.WithNamespace("a/b"), kubernetes.WithDefaultKind("apps/v1"), kubernetes.WithFieldManager(""))
	if err == nil {
		t.Fatal("New with three bad options: no error")
	}
	for _, s := range []string{"namespace", "kind", "field manager"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not report the bad %s", err, s)
		}
	}
	if _, err := kubernetes.New(cfg); err != nil {
		t.Errorf("New makes no request, yet: %v", err)
	}
}
