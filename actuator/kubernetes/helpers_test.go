package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes/kubetest"
	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

// env is a test's view of the shared API server: an administrator's config and
// client, and a namespace of its own.
type env struct {
	cfg    *rest.Config
	client clientset.Interface
	ns     string
}

var nsSeq atomic.Int64

// newEnv returns the shared cluster with a fresh namespace, or skips (fails under
// AUTOSCALELUA_INTEGRATION=1) when there is no cluster.
func newEnv(t *testing.T) *env {
	t.Helper()
	if clusterErr != nil {
		t.Fatalf("the API server did not start: %v", clusterErr)
	}
	if cluster == nil {
		testenv.Missing(t, "kube-apiserver and etcd", kubetest.HowToGetBinaries)
	}
	cfg := cluster.Config()
	client := clientset.NewForConfigOrDie(cfg)
	name := fmt.Sprintf("t%d-%s", nsSeq.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	ctx := testCtx(t)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return &env{cfg: cfg, client: client, ns: name}
}

// testCtx returns a context that ends with the test, and at the latest after a minute.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func labelsFor(name string) map[string]string { return map[string]string{"app": name} }

func podTemplate(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labelsFor(name)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}
}

func (e *env) deployment(t *testing.T, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	d, err := e.client.AppsV1().Deployments(e.ns).Create(testCtx(t), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labelsFor(name)},
			Template: podTemplate(name),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	return d
}

func (e *env) statefulSet(t *testing.T, name string, replicas int32) {
	t.Helper()
	_, err := e.client.AppsV1().StatefulSets(e.ns).Create(testCtx(t), &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labelsFor(name)},
			Template:    podTemplate(name),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create statefulset: %v", err)
	}
}

func (e *env) deploymentReplicas(t *testing.T, name string) int32 {
	t.Helper()
	d, err := e.client.AppsV1().Deployments(e.ns).Get(testCtx(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment: %v", err)
	}
	return *d.Spec.Replicas
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
