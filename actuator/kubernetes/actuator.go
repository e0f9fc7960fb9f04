package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/util/retry"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// Sentinel errors callers branch on with [errors.Is]. The actuator's errors also wrap
// the [actuator] package's sentinels where one fits, as documented on [Actuator].
var (
	// ErrForbidden reports that the API server refused a call for lack of permission
	// (HTTP 403). The message names the verb and resource a Role must grant.
	ErrForbidden = errors.New("kubernetes: forbidden")
	// ErrUnauthorized reports that the API server did not accept the credentials
	// (HTTP 401): a missing, expired or revoked token.
	ErrUnauthorized = errors.New("kubernetes: unauthorized")
	// ErrNotScalable reports a kind that the API server knows but that has no /scale
	// subresource. It wraps [actuator.ErrInvalidRequest].
	ErrNotScalable = fmt.Errorf("%w: kubernetes: resource has no /scale subresource", actuator.ErrInvalidRequest)
	// ErrUnknownKind reports a [actuator.Target.Kind] the API server does not serve.
	// It wraps [actuator.ErrInvalidRequest].
	ErrUnknownKind = fmt.Errorf("%w: kubernetes: unknown resource kind", actuator.ErrInvalidRequest)
)

// Defaults of the [Actuator].
const (
	// DefaultKind is the kind scaled when a target names none.
	DefaultKind = "deployments.apps"
	// DefaultNamespace is the namespace used when a target names none.
	DefaultNamespace = "default"
	// DefaultFieldManager is the field manager recorded on writes.
	DefaultFieldManager = "autoscalelua"
)

// Stats counts what an [Actuator] did. All counts are since construction.
type Stats struct {
	// Writes is the number of successful updates of a /scale subresource.
	Writes uint64
	// Unchanged is the number of Scale calls that found the replicas already at the
	// requested count and wrote nothing.
	Unchanged uint64
	// Conflicts is the number of updates refused with 409 Conflict (and retried).
	Conflicts uint64
}

// Actuator scales any resource that has a /scale subresource — Deployments,
// StatefulSets, ReplicaSets, and custom resources such as Argo Rollouts — through
// client-go's scale client and a discovery-backed RESTMapper. It implements
// [actuator.Actuator] and [actuator.ReplicaReader].
//
// A target's Kind is a resource, optionally qualified by its API group, as kubectl
// accepts it: "deployments.apps", "deployment", "deploy", "statefulsets.apps",
// "sts", "rollouts.argoproj.io". The empty Kind means the actuator's default kind
// (see [WithDefaultKind]); the empty Namespace its default namespace (see
// [WithNamespace]).
//
// Scale reads the /scale subresource and, unless spec.replicas already equals the
// requested count, updates it; an update refused with 409 Conflict (someone else
// changed the object in between) is retried with a fresh read, as
// [retry.RetryOnConflict] does. Errors:
//
//   - an invalid request, an unknown kind ([ErrUnknownKind]), a kind without /scale
//     ([ErrNotScalable]) or a value the server rejects wraps
//     [actuator.ErrInvalidRequest];
//   - a missing object wraps [actuator.ErrUnknownTarget];
//   - a refusal wraps [ErrForbidden] and names the missing verb and resource, or
//     wraps [ErrUnauthorized];
//
// and all of these are marked [actuator.Permanent]. Other errors (timeouts, server
// errors, throttling, ctx ending) are retryable. Every call honours ctx's deadline.
//
// An Actuator is safe for concurrent use. It starts no goroutine.
type Actuator struct {
	scales       scale.ScalesGetter
	mapper       meta.RESTMapperWithContext // the shortcut expander over deferred
	deferred     *restmapper.DeferredDiscoveryRESTMapper
	disco        discovery.CachedDiscoveryInterfaceWithContext
	namespace    string
	defaultKind  string
	fieldManager string
	backoff      wait.Backoff

	kinds sync.Map // Kind string -> schema.GroupResource

	writes, unchanged, conflicts atomic.Uint64
}

var (
	_ actuator.Actuator      = (*Actuator)(nil)
	_ actuator.ReplicaReader = (*Actuator)(nil)
)

// Option configures an [Actuator].
type Option func(*Actuator) error

// WithNamespace sets the namespace of targets that name none. Default
// [DefaultNamespace].
func WithNamespace(ns string) Option {
	return func(a *Actuator) error {
		if err := validName("namespace", ns); err != nil {
			return err
		}
		a.namespace = ns
		return nil
	}
}

// WithDefaultKind sets the kind of targets that name none. Default [DefaultKind].
func WithDefaultKind(kind string) Option {
	return func(a *Actuator) error {
		if _, err := parseKind(kind); err != nil {
			return err
		}
		a.defaultKind = kind
		return nil
	}
}

// WithFieldManager sets the field manager recorded on updates (visible in
// metadata.managedFields). Default [DefaultFieldManager].
func WithFieldManager(name string) Option {
	return func(a *Actuator) error {
		if name == "" || len(name) > 128 {
			return fmt.Errorf("field manager %q: want 1..128 bytes", name)
		}
		a.fieldManager = name
		return nil
	}
}

// WithConflictBackoff sets how often and how fast an update refused with 409
// Conflict is retried. Default [retry.DefaultRetry] (5 attempts, 10 ms apart with
// jitter). Steps must be at least 1.
func WithConflictBackoff(b wait.Backoff) Option {
	return func(a *Actuator) error {
		if b.Steps < 1 || b.Duration < 0 {
			return fmt.Errorf("conflict backoff: steps %d must be >= 1 and duration %v >= 0", b.Steps, b.Duration)
		}
		a.backoff = b
		return nil
	}
}

// New returns an actuator that talks to the API server cfg describes (see
// [InClusterConfig] and [KubeconfigConfig]). It builds a discovery client whose
// answers are cached in memory (and refreshed when a kind is not found, so custom
// resources installed later are found), a RESTMapper over it, and a scale client.
// It makes no request.
func New(cfg *rest.Config, opts ...Option) (*Actuator, error) {
	if cfg == nil {
		return nil, errors.New("kubernetes: new actuator: nil rest config")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultFieldManager
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: new actuator: %w", err)
	}
	// One in-memory discovery cache serves the RESTMapper, the scale client's
	// scale-kind resolver and the /scale check of resolve.
	cached := memory.NewMemCacheClient(dc)
	cachedCtx := discovery.ToCachedDiscoveryInterfaceWithContext(cached)
	deferred := restmapper.NewDeferredDiscoveryRESTMapperWithContext(cachedCtx)
	expander := restmapper.NewShortcutExpanderWithContext(deferred, cachedCtx, func(string) {})
	// The scale client is handed fully resolved resources, so the plain mapper
	// suffices for it.
	scales, err := scale.NewForConfig(cfg, deferred, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return nil, fmt.Errorf("kubernetes: new actuator: %w", err)
	}
	a := &Actuator{
		scales:       scales,
		mapper:       expander,
		deferred:     deferred,
		disco:        cachedCtx,
		namespace:    DefaultNamespace,
		defaultKind:  DefaultKind,
		fieldManager: DefaultFieldManager,
		backoff:      retry.DefaultRetry,
	}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("nil option"))
			continue
		}
		if err := o(a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubernetes: new actuator: %w", err)
	}
	return a, nil
}

// Stats returns the actuator's counters.
func (a *Actuator) Stats() Stats {
	return Stats{Writes: a.writes.Load(), Unchanged: a.unchanged.Load(), Conflicts: a.conflicts.Load()}
}

// Scale sets the target's spec.replicas to req.Replicas through its /scale
// subresource. It writes nothing when the count is already right.
func (a *Actuator) Scale(ctx context.Context, req actuator.Request) error {
	if err := req.Validate(); err != nil {
		return actuator.Permanent(fmt.Errorf("kubernetes: scale: %w", err))
	}
	if req.Replicas > math.MaxInt32 {
		return actuator.Permanent(fmt.Errorf("kubernetes: scale %s: %w: replicas %d above %d", req.Target, actuator.ErrInvalidRequest, req.Replicas, math.MaxInt32))
	}
	gr, err := a.resolve(ctx, req.Target.Kind)
	if err != nil {
		return fmt.Errorf("kubernetes: scale %s: %w", req.Target, err)
	}
	ns, name := a.ns(req.Target), req.Target.Name
	client := a.scales.Scales(ns)
	want := int32(req.Replicas)
	verb := "get"
	err = retry.RetryOnConflict(a.backoff, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		verb = "get"
		s, err := client.Get(ctx, gr, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Spec.Replicas == want {
			a.unchanged.Add(1)
			return nil
		}
		verb = "update"
		s.Spec.Replicas = want
		_, err = client.Update(ctx, gr, s, metav1.UpdateOptions{FieldManager: a.fieldManager})
		switch {
		case err == nil:
			a.writes.Add(1)
		case apierrors.IsConflict(err):
			a.conflicts.Add(1)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("kubernetes: scale %s to %d: %w", req.Target, req.Replicas, classify(err, verb, gr, ns, name))
	}
	return nil
}

// Replicas returns the target's spec.replicas, read from its /scale subresource:
// the count last asked for, which the controller (Deployment, StatefulSet, ...)
// converges to. The error wraps [actuator.ErrUnknownTarget] when the object does not
// exist.
func (a *Actuator) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	if err := t.Validate(); err != nil {
		return 0, actuator.Permanent(fmt.Errorf("kubernetes: replicas: %w", err))
	}
	s, err := a.get(ctx, t)
	if err != nil {
		return 0, err
	}
	return int(s.Spec.Replicas), nil
}

// Status is a target's replica counts as its /scale subresource reports them.
type Status struct {
	// Desired is spec.replicas, the count asked for.
	Desired int
	// Current is status.replicas, the count the controller last observed.
	Current int
	// Selector is status.selector, the label selector of the target's pods ("" when
	// the resource reports none).
	Selector string
}

// Status reads the target's /scale subresource. The error wraps
// [actuator.ErrUnknownTarget] when the object does not exist.
func (a *Actuator) Status(ctx context.Context, t actuator.Target) (Status, error) {
	if err := t.Validate(); err != nil {
		return Status{}, actuator.Permanent(fmt.Errorf("kubernetes: status: %w", err))
	}
	s, err := a.get(ctx, t)
	if err != nil {
		return Status{}, err
	}
	return Status{Desired: int(s.Spec.Replicas), Current: int(s.Status.Replicas), Selector: s.Status.Selector}, nil
}

func (a *Actuator) get(ctx context.Context, t actuator.Target) (*autoscalingv1.Scale, error) {
	gr, err := a.resolve(ctx, t.Kind)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: read %s: %w", t, err)
	}
	ns := a.ns(t)
	s, err := a.scales.Scales(ns).Get(ctx, gr, t.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: read %s: %w", t, classify(err, "get", gr, ns, t.Name))
	}
	return s, nil
}

func (a *Actuator) ns(t actuator.Target) string {
	if t.Namespace != "" {
		return t.Namespace
	}
	return a.namespace
}

// resolve maps a target's kind to the group and resource the server serves, checking
// that it has a /scale subresource. Results are cached; an unknown kind refreshes the
// discovery cache once, so kinds installed after the first call are found.
func (a *Actuator) resolve(ctx context.Context, kind string) (schema.GroupResource, error) {
	if kind == "" {
		kind = a.defaultKind
	}
	if gr, ok := a.kinds.Load(kind); ok {
		return gr.(schema.GroupResource), nil
	}
	partial, err := parseKind(kind)
	if err != nil {
		return schema.GroupResource{}, actuator.Permanent(err)
	}
	gvr, err := a.mapper.ResourceForWithContext(ctx, partial)
	if meta.IsNoMatchError(err) {
		if cerr := ctx.Err(); cerr != nil {
			return schema.GroupResource{}, cerr
		}
		a.deferred.ResetWithContext(ctx)
		gvr, err = a.mapper.ResourceForWithContext(ctx, partial)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return schema.GroupResource{}, actuator.Permanent(fmt.Errorf("%w %q: %w", ErrUnknownKind, kind, err))
		}
		return schema.GroupResource{}, fmt.Errorf("discovery of kind %q: %w", kind, classifyDiscovery(err))
	}
	list, err := a.disco.ServerResourcesForGroupVersionWithContext(ctx, gvr.GroupVersion().String())
	if err != nil {
		return schema.GroupResource{}, fmt.Errorf("discovery of %s: %w", gvr.GroupVersion(), classifyDiscovery(err))
	}
	scalable := false
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource+"/scale" {
			scalable = true
			break
		}
	}
	gr := gvr.GroupResource()
	if !scalable {
		return schema.GroupResource{}, actuator.Permanent(fmt.Errorf("%w: %s (kind %q)", ErrNotScalable, gr, kind))
	}
	a.kinds.Store(kind, gr)
	return gr, nil
}

// parseKind turns "deployments.apps", "Deployment" or "deploy" into a partial
// resource for the RESTMapper.
func parseKind(kind string) (schema.GroupVersionResource, error) {
	if kind == "" || strings.ContainsAny(kind, "/: \t\n") {
		return schema.GroupVersionResource{}, fmt.Errorf("%w: kubernetes: kind %q: want resource[.group], e.g. deployments.apps", actuator.ErrInvalidRequest, kind)
	}
	gr := schema.ParseGroupResource(strings.ToLower(kind))
	return gr.WithVersion(""), nil
}

func validName(what, v string) error {
	if v == "" || len(v) > 253 || strings.ContainsAny(v, "/: \t\n") {
		return fmt.Errorf("%s %q: want 1..253 bytes without '/', ':' or spaces", what, v)
	}
	return nil
}

// classify wraps an API error in the sentinel callers branch on, marking the ones
// retrying cannot fix as permanent.
func classify(err error, verb string, gr schema.GroupResource, ns, name string) error {
	resource := gr.Resource + "/scale"
	if gr.Group != "" {
		resource += " (API group " + gr.Group + ")"
	}
	switch {
	case apierrors.IsNotFound(err):
		return actuator.Permanent(fmt.Errorf("%w: %s %q not found in namespace %q: %w", actuator.ErrUnknownTarget, gr, name, ns, err))
	case apierrors.IsForbidden(err):
		return actuator.Permanent(fmt.Errorf("%w: missing permission to %q the resource %s in namespace %q (grant it with a Role): %w",
			ErrForbidden, verb, resource, ns, err))
	case apierrors.IsUnauthorized(err):
		return actuator.Permanent(fmt.Errorf("%w: %w", ErrUnauthorized, err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return actuator.Permanent(fmt.Errorf("%w: %w", actuator.ErrInvalidRequest, err))
	}
	return err
}

func classifyDiscovery(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return actuator.Permanent(fmt.Errorf("%w: missing permission for API discovery (the system:discovery ClusterRole): %w", ErrForbidden, err))
	case apierrors.IsUnauthorized(err):
		return actuator.Permanent(fmt.Errorf("%w: %w", ErrUnauthorized, err))
	}
	return err
}
