package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// Labels set on every [balancer.Endpoint] made from an EndpointSlice; a label is
// absent when the slice does not say.
const (
	// LabelZone is the endpoint's zone (topology.kubernetes.io/zone of its node).
	LabelZone = "zone"
	// LabelNode is the name of the node the endpoint runs on.
	LabelNode = "node"
	// LabelPod is the name of the pod behind the endpoint.
	LabelPod = "pod"
)

// Service names the Service whose endpoints [EndpointSlices] follows, and the port
// to send requests to.
type Service struct {
	// Namespace and Name name the Service. Required.
	Namespace, Name string
	// PortName is the name of the Service port; "" matches the unnamed port of a
	// single-port Service.
	PortName string
	// Scheme is the URL scheme of the endpoints, "http" or "https". Empty means
	// "https" for a port whose appProtocol is "https", else "http".
	Scheme string
}

// Validate reports every problem with s at once.
func (s Service) Validate() error {
	var errs []error
	if err := validName("service namespace", s.Namespace); err != nil {
		errs = append(errs, err)
	}
	if err := validName("service name", s.Name); err != nil {
		errs = append(errs, err)
	}
	if len(s.PortName) > 63 {
		errs = append(errs, fmt.Errorf("port name is %d bytes long, more than 63", len(s.PortName)))
	}
	if s.Scheme != "" && s.Scheme != "http" && s.Scheme != "https" {
		errs = append(errs, fmt.Errorf("scheme %q: want http or https", s.Scheme))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubernetes: service: %w", err)
	}
	return nil
}

// EndpointSlices is a [balancer.Discovery] that follows the EndpointSlices of a
// Service (those labelled kubernetes.io/service-name) with an informer, so a pool
// fed by it — pool.Sync(ctx, slices) — gains pods as they become ready and loses
// them as they terminate.
//
// Only ready endpoints are reported: ready (nil counts as true) and not
// terminating (nil counts as false), as the EndpointSlice API defines them. With
// [WithTerminatingFallback], when no endpoint is ready, the endpoints that are
// terminating but still serving are reported instead, as kube-proxy does
// (KEP-1669, "ProxyTerminatingEndpoints"). An endpoint is reported once even when
// several slices list it; its first address is used, as the API allows. Each
// endpoint's ID is its host:port, its URL scheme://host:port, and it carries the
// labels [LabelZone], [LabelNode] and [LabelPod].
//
// An EndpointSlices is safe for concurrent use; each [EndpointSlices.Watch] runs
// its own informer.
type EndpointSlices struct {
	client      clientset.Interface
	svc         Service
	logger      *slog.Logger
	terminating bool
}

var _ balancer.Discovery = (*EndpointSlices)(nil)

// DiscoveryOption configures an [EndpointSlices].
type DiscoveryOption func(*EndpointSlices) error

// WithTerminatingFallback reports the serving, terminating endpoints when no
// endpoint is ready, rather than none.
func WithTerminatingFallback() DiscoveryOption {
	return func(d *EndpointSlices) error {
		d.terminating = true
		return nil
	}
}

// WithDiscoveryLogger sets the logger of the discovery and of its informer. Default
// [slog.Default], the default logger everywhere in this module.
func WithDiscoveryLogger(l *slog.Logger) DiscoveryOption {
	return func(d *EndpointSlices) error {
		if l == nil {
			return errors.New("nil logger")
		}
		d.logger = l
		return nil
	}
}

// NewEndpointSlices returns a discovery of svc's endpoints. It starts nothing; call
// [EndpointSlices.Watch], or pass it to [balancer.Pool.Sync].
func NewEndpointSlices(client clientset.Interface, svc Service, opts ...DiscoveryOption) (*EndpointSlices, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("kubernetes: new endpoint slices: nil client"))
	}
	if err := svc.Validate(); err != nil {
		errs = append(errs, err)
	}
	d := &EndpointSlices{client: client, svc: svc, logger: slog.Default()}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("nil option"))
			continue
		}
		if err := o(d); err != nil {
			errs = append(errs, fmt.Errorf("kubernetes: new endpoint slices: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

// Watch lists and watches the Service's EndpointSlices until ctx ends. Once the
// informer has synced it calls update with the full list of ready endpoints (empty
// when there is none), and again after each change of the list, from the calling
// goroutine, one call at a time. An error from update is logged and the previous
// list is kept as the base for the next comparison; watching goes on. Watch returns
// ctx's error, after its informer's goroutines have ended.
func (d *EndpointSlices) Watch(ctx context.Context, update func([]balancer.Endpoint) error) error {
	if update == nil {
		return errors.New("kubernetes: endpoint slices: nil update function")
	}
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(d.logger.Handler()))
	selector := labels.Set{discoveryv1.LabelServiceName: d.svc.Name}.String()
	factory := informers.NewSharedInformerFactoryWithOptions(d.client, 0,
		informers.WithNamespace(d.svc.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	defer factory.Shutdown() // runs after cancel below: waits for the informer's goroutines
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	inf := factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default: // a recomputation is already pending; it will see this change too
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return fmt.Errorf("kubernetes: endpoint slices: %w", err)
	}
	lister := inf.Lister().EndpointSlices(d.svc.Namespace)
	factory.StartWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	var last []balancer.Endpoint
	first := true
	for {
		list, err := lister.List(labels.Everything())
		if err != nil { // a lister over a synced cache does not fail; be safe anyway
			d.logger.LogAttrs(ctx, slog.LevelWarn, "kubernetes: list endpoint slices", slog.Any("error", err))
		} else if eps := d.Endpoints(list); first || !equalEndpoints(eps, last) {
			if err := update(eps); err != nil {
				d.logger.LogAttrs(ctx, slog.LevelWarn, "kubernetes: endpoint update rejected",
					slog.String("service", d.svc.Namespace+"/"+d.svc.Name), slog.Any("error", err))
			}
			last, first = eps, false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// endpoint states, best last.
const (
	stateNone = iota
	stateTerminating
	stateReady
)

// Endpoints returns the endpoints that slices report for the Service's port, as
// [EndpointSlices.Watch] passes them to its update function: sorted by ID. Slices of
// other Services are ignored. It is exported for tests and for callers that list
// slices themselves.
func (d *EndpointSlices) Endpoints(list []*discoveryv1.EndpointSlice) []balancer.Endpoint {
	type cand struct {
		ep    balancer.Endpoint
		state int
	}
	byID := map[string]*cand{}
	anyReady := false
	for _, s := range list {
		if s == nil || s.Labels[discoveryv1.LabelServiceName] != d.svc.Name || s.Namespace != d.svc.Namespace {
			continue
		}
		port, scheme, ok := d.port(s)
		if !ok {
			continue
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			state := endpointState(e.Conditions)
			if state == stateNone || len(e.Addresses) == 0 {
				continue
			}
			host := net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))
			if c, ok := byID[host]; ok && c.state >= state {
				continue
			}
			lbl := map[string]string{}
			if e.Zone != nil && *e.Zone != "" {
				lbl[LabelZone] = *e.Zone
			}
			if e.NodeName != nil && *e.NodeName != "" {
				lbl[LabelNode] = *e.NodeName
			}
			if r := e.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
				lbl[LabelPod] = r.Name
			}
			byID[host] = &cand{ep: balancer.Endpoint{ID: host, URL: scheme + "://" + host, Labels: lbl}, state: state}
			anyReady = anyReady || state == stateReady
		}
	}
	best := stateReady
	if d.terminating && !anyReady {
		best = stateTerminating
	}
	out := make([]balancer.Endpoint, 0, len(byID))
	for _, c := range byID {
		if c.state == best {
			out = append(out, c.ep)
		}
	}
	slices.SortFunc(out, func(a, b balancer.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// endpointState reads the conditions as the EndpointSlice API defines them: ready
// and serving nil mean true, terminating nil means false.
func endpointState(c discoveryv1.EndpointConditions) int {
	ready := c.Ready == nil || *c.Ready
	serving := c.Serving == nil || *c.Serving
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case ready && !terminating:
		return stateReady
	case serving && terminating:
		return stateTerminating
	}
	return stateNone
}

// port finds the Service's TCP port in a slice, and the scheme to use.
func (d *EndpointSlices) port(s *discoveryv1.EndpointSlice) (int32, string, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != d.svc.PortName || p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		scheme := d.svc.Scheme
		if scheme == "" {
			scheme = "http"
			if p.AppProtocol != nil && *p.AppProtocol == "https" {
				scheme = "https"
			}
		}
		return *p.Port, scheme, true
	}
	return 0, "", false
}

func equalEndpoints(a, b []balancer.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y balancer.Endpoint) bool {
		return x.ID == y.ID && x.URL == y.URL && x.Weight == y.Weight && x.Drain == y.Drain && maps.Equal(x.Labels, y.Labels)
	})
}
