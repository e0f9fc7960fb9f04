package kubetest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes/kubetest"
	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's shared transports keep idle connections; klog flushes in the background.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

func TestStartWithoutBinaries(t *testing.T) {
	_, err := kubetest.Start(context.Background(), t.TempDir())
	if !errors.Is(err, kubetest.ErrNoBinaries) {
		t.Fatalf("Start in an empty folder: %v, want ErrNoBinaries", err)
	}
}

// TestCluster starts a cluster and checks what the other packages' tests rely on:
// the administrator's config, a kubeconfig file, and service account tokens.
func TestCluster(t *testing.T) {
	dir := kubetest.BinDir()
	if dir == "" {
		testenv.Missing(t, "kube-apiserver and etcd", kubetest.HowToGetBinaries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := kubetest.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if err := c.Stop(); err != nil { // idempotent
			t.Error(err)
		}
	}()

	admin := clientset.NewForConfigOrDie(c.Config())
	if _, err := admin.Discovery().ServerVersion(); err != nil {
		t.Fatalf("server version: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(path, ""); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.NewForConfigOrDie(cfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("through the kubeconfig: %v", err)
	}

	sa, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	review, err := clientset.NewForConfigOrDie(c.ConfigForToken(tr.Status.Token)).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("who am I: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:default:probe"; got != want {
		t.Errorf("service account token authenticates as %q, want %q", got, want)
	}
	if _, err := os.Stat(c.Host()); err == nil {
		t.Errorf("Host() = %q looks like a file", c.Host())
	}
}
