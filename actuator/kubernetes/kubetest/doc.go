// Package kubetest starts a real etcd and kube-apiserver on loopback for tests, so
// that code using client-go is tested against the API server it will meet in
// production rather than against client-go's fake clientset.
//
// The binaries are not downloaded: scripts/kubebin.sh builds them from the Go module
// proxy into a cache and prints the folder, which the caller passes to [Start] (or
// exports as AUTOSCALELUA_KUBEBIN, read by [BinDir]). There is no controller manager
// and no scheduler: Deployments get no pods, but the API (including /scale
// subresources, Leases, EndpointSlices, RBAC and CustomResourceDefinitions) works.
//
// A typical TestMain:
//
//	var cluster *kubetest.Cluster
//
//	func TestMain(m *testing.M) {
//		if dir := kubetest.BinDir(); dir != "" {
//			c, err := kubetest.Start(context.Background(), dir)
//			if err != nil {
//				fmt.Fprintln(os.Stderr, err)
//				os.Exit(1)
//			}
//			cluster = c
//		}
//		code := m.Run()
//		if cluster != nil {
//			cluster.Stop()
//		}
//		os.Exit(code)
//	}
//
// and in a test, [Cluster.Config] gives an administrator's *rest.Config.
package kubetest
