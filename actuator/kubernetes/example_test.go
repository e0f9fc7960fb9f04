package kubernetes_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/balancer"
)

// The endpoints a pool gets from a Service's EndpointSlices: ready ones only.
func ExampleEndpointSlices_Endpoints() {
	client := clientset.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}) // Endpoints makes no request
	d, err := kubernetes.NewEndpointSlices(client, kubernetes.Service{Namespace: "shop", Name: "web", PortName: "http"})
	if err != nil {
		fmt.Println(err)
		return
	}
	yes, no := true, false
	zone := "eu-west-1a"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.7"}, Zone: &zone, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-7"}},
			{Addresses: []string{"10.1.0.8"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},                       // starting
			{Addresses: []string{"10.1.0.9"}, Conditions: discoveryv1.EndpointConditions{Serving: &yes, Terminating: &yes}}, // draining
		},
	}
	for _, e := range d.Endpoints([]*discoveryv1.EndpointSlice{s}) {
		fmt.Println(e.ID, e.URL, e.Labels)
	}
	// Output:
	// 10.1.0.7:8080 http://10.1.0.7:8080 map[pod:web-7 zone:eu-west-1a]
}

// Scale a Deployment and read the count back, from outside the cluster.
func ExampleActuator() {
	cfg, err := kubernetes.KubeconfigConfig("", "") // $KUBECONFIG or ~/.kube/config
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := kubernetes.New(cfg, kubernetes.WithNamespace("shop"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	target := actuator.Target{Kind: "deployments.apps", Name: "checkout"}
	err = a.Scale(ctx, actuator.Request{Target: target, Replicas: 5, Previous: -1, DecisionID: "manual-1", Time: time.Now()})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, err := a.Replicas(ctx, target)
	fmt.Println(n, err)
}

// Elect one leader among a gateway's replicas; actuate only while leading.
func ExampleElector() {
	cfg, err := kubernetes.InClusterConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	client := clientset.NewForConfigOrDie(cfg)
	el, err := kubernetes.NewElector(client, kubernetes.ElectorConfig{Namespace: "shop", Name: "gateway"},
		kubernetes.WithElectorLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go el.Run(ctx) // releases the Lease when ctx ends
	act, err := kubernetes.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	gated := el.Gate(act) // give it to autoscale.WithDefaultActuator, and el to autoscale.WithElector
	_ = gated
}

var _ balancer.Discovery = (*kubernetes.EndpointSlices)(nil)
