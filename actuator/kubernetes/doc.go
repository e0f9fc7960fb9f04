// Package kubernetes connects autoscalelua to Kubernetes: it scales anything with a
// /scale subresource, elects one actuating leader among a gateway's replicas with a
// Lease, and keeps balancer pools in step with a Service's EndpointSlices.
//
// It is the only package of the module that imports client-go, so a program that does
// not scale on Kubernetes does not link it.
//
//   - [Actuator] implements [actuator.Actuator] and [actuator.ReplicaReader] over
//     client-go's scale client and a discovery-backed RESTMapper: Deployments,
//     StatefulSets, ReplicaSets and custom resources such as Argo Rollouts, named by
//     the target's Kind ("deployments.apps", "sts", "rollouts.argoproj.io"). Setting
//     replicas is idempotent and retried on 409 Conflict; errors say what is missing
//     ([ErrForbidden] names the verb and resource a Role must grant).
//   - [Elector] implements [autoscale.Elector] over client-go's leaderelection with a
//     coordination.k8s.io Lease, released on cancel; [Elector.Gate] wraps an actuator
//     so that the actuations of two replicas never overlap.
//   - [EndpointSlices] implements [balancer.Discovery]: an informer over a Service's
//     EndpointSlices reporting its ready endpoints, labelled with zone, node and pod.
//   - [Config], [InClusterConfig] and [KubeconfigConfig] build the client
//     configuration, in a pod or from a kubeconfig file.
//
// The permissions needed are few: get, update and patch on the scale subresource of
// the kinds scaled; get, create and update on leases in one namespace; list and
// watch on endpointslices. examples/kubernetes has the Role, the RoleBinding and a
// runnable gateway.
//
// Example, in a gateway replica:
//
//	cfg, err := kubernetes.Config(*kubeconfig, "")
//	client, err := clientset.NewForConfig(cfg)
//	act, err := kubernetes.New(cfg, kubernetes.WithNamespace("shop"))
//	el, err := kubernetes.NewElector(client, kubernetes.ElectorConfig{Namespace: "shop", Name: "gateway"})
//	go el.Run(ctx)
//	slices, err := kubernetes.NewEndpointSlices(client, kubernetes.Service{Namespace: "shop", Name: "web", PortName: "http"})
//	go pool.Sync(ctx, slices)
//	loop, err := autoscale.NewLoop(
//		autoscale.WithPolicy(policy),
//		autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 20}),
//		autoscale.WithDefaultActuator(el.Gate(act)), // actuate only while leading
//		autoscale.WithElector(el),             // and record why not on the others
//		autoscale.WithRegistry(reg),
//	)
//
// The tests run against a real etcd and kube-apiserver (see the kubetest
// sub-package), which ./scripts/test.sh builds and starts.
package kubernetes
