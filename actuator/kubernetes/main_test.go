package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes/kubetest"
)

// The tests share one etcd and kube-apiserver, started here when the binaries are
// found through kubetest.EnvBinDir; each test works in its own namespace.
var (
	cluster    *kubetest.Cluster
	clusterErr error
)

// leakOptions ignore the goroutines client-go keeps for the life of the process: the
// idle connections of its shared transports and klog's flush daemon.
var leakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
}

func TestMain(m *testing.M) {
	if dir := kubetest.BinDir(); dir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cluster, clusterErr = kubetest.Start(ctx, dir)
		cancel()
	}
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop cluster:", err)
		}
	}
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: errors on successful test run:", err)
			code = 1
		}
	}
	os.Exit(code)
}
