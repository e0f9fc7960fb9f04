package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Leader election defaults: those of kube-controller-manager and client-go's
// examples.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrElectorRunning is returned by [Elector.Run] when the elector already runs.
var ErrElectorRunning = errors.New("kubernetes: elector already running")

// ElectorConfig configures an [Elector]. Namespace and Name are required; the zero
// value of every other field means its default.
type ElectorConfig struct {
	// Namespace and Name name the coordination.k8s.io Lease the replicas compete
	// for; it is created when missing. Required.
	Namespace, Name string
	// Identity names this replica in the Lease's holderIdentity; it must be unique
	// among the replicas. Empty means the host name (the pod's name) followed by a
	// random suffix.
	Identity string
	// LeaseDuration is how long the other replicas wait, after they last saw the
	// Lease renewed, before they take it over: the longest a dead leader blocks
	// actuation. The Lease stores it in whole seconds, so it must be a whole number
	// of seconds, at least 1 s. Zero means [DefaultLeaseDuration].
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it steps
	// down; less than LeaseDuration. [Elector.IsLeader] also turns false once this
	// long has passed since the last successful renewal started. Zero means
	// [DefaultRenewDeadline].
	RenewDeadline time.Duration
	// RetryPeriod is the interval between attempts to acquire or renew; 1.2 times
	// it (client-go's jitter) must be less than RenewDeadline. Zero means
	// [DefaultRetryPeriod].
	RetryPeriod time.Duration
}

func (c ElectorConfig) withDefaults() ElectorConfig {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	return c
}

// Validate reports every problem with the configuration at once.
func (c ElectorConfig) Validate() error {
	var errs []error
	if err := validName("lease namespace", c.Namespace); err != nil {
		errs = append(errs, err)
	}
	if err := validName("lease name", c.Name); err != nil {
		errs = append(errs, err)
	}
	if len(c.Identity) > 128 {
		errs = append(errs, fmt.Errorf("identity is %d bytes long, more than 128", len(c.Identity)))
	}
	d := c.withDefaults()
	if d.LeaseDuration < 0 || d.RenewDeadline < 0 || d.RetryPeriod < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if d.LeaseDuration < time.Second || d.LeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("lease duration %v is not a whole number of seconds >= 1s", d.LeaseDuration))
	}
	if d.RenewDeadline >= d.LeaseDuration {
		errs = append(errs, fmt.Errorf("renew deadline %v is not less than lease duration %v", d.RenewDeadline, d.LeaseDuration))
	}
	if float64(d.RetryPeriod)*leaderelection.JitterFactor >= float64(d.RenewDeadline) {
		errs = append(errs, fmt.Errorf("retry period %v times %v is not less than renew deadline %v", d.RetryPeriod, leaderelection.JitterFactor, d.RenewDeadline))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubernetes: elector config: %w", err)
	}
	return nil
}

// Elector elects one leader among several replicas of a gateway with a
// coordination.k8s.io Lease, through client-go's leaderelection package. It
// implements [autoscale.Elector]: give it to the loop with autoscale.WithElector and
// only the leader actuates.
//
// [Elector.Run] competes for the Lease until its context ends, then releases the
// Lease (when it holds it) so another replica takes over at its next retry instead
// of waiting for the Lease to expire. A leader that loses the Lease competes again.
//
// Actuations of two replicas never overlap: [Elector.IsLeader] turns false before
// the Lease is released, and on its own once RenewDeadline has passed since the
// last successful renewal started, which is before any other replica may consider
// the Lease expired (after LeaseDuration > RenewDeadline).
//
// An Elector is safe for concurrent use. [Elector.IsLeader] does not block.
type Elector struct {
	client   clientset.Interface
	cfg      ElectorConfig
	clock    metrics.Clock
	logger   *slog.Logger
	onChange func(leading bool)

	leading   atomic.Bool
	term      atomic.Uint64 // fencing token of our leadership: the Lease's transitions + 1
	renewedAt atomic.Int64  // ns on clock: start of the last successful write of our record
	holder    atomic.Pointer[string]
	running   atomic.Bool

	mu         sync.Mutex         // guards the term and the in-flight count's Add
	termCtx    context.Context    // canceled when the current term of leadership ends
	termCancel context.CancelFunc // nil when not leading
	inFlight   sync.WaitGroup     // gated actuator calls running
}

var (
	_ autoscale.Elector = (*Elector)(nil)
	_ autoscale.Fencer  = (*Elector)(nil)
)

// ElectorOption configures an [Elector].
type ElectorOption func(*Elector) error

// WithElectorClock sets the clock [Elector.IsLeader] measures the age of the last
// renewal with. Default [metrics.NewSystemClock]. It must advance with real time:
// client-go's leader election runs on the real clock.
func WithElectorClock(c metrics.Clock) ElectorOption {
	return func(e *Elector) error {
		if c == nil {
			return errors.New("nil clock")
		}
		e.clock = c
		return nil
	}
}

// WithElectorLogger sets the logger of the elector and of client-go's leader
// election. Default [slog.Default], the default logger everywhere in this module.
func WithElectorLogger(l *slog.Logger) ElectorOption {
	return func(e *Elector) error {
		if l == nil {
			return errors.New("nil logger")
		}
		e.logger = l
		return nil
	}
}

// WithOnChange sets a function called with true when this replica starts leading and
// false when it stops. It runs on the goroutine of [Elector.Run], outside any lock,
// and must not block.
func WithOnChange(f func(leading bool)) ElectorOption {
	return func(e *Elector) error {
		e.onChange = f
		return nil
	}
}

// NewElector returns an elector for the Lease cfg names. It starts nothing; call
// [Elector.Run].
func NewElector(client clientset.Interface, cfg ElectorConfig, opts ...ElectorOption) (*Elector, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("kubernetes: new elector: nil client"))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	e := &Elector{client: client, cfg: cfg.withDefaults(), logger: slog.Default()}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("nil option"))
			continue
		}
		if err := o(e); err != nil {
			errs = append(errs, fmt.Errorf("kubernetes: new elector: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if e.clock == nil {
		e.clock = metrics.NewSystemClock()
	}
	if e.cfg.Identity == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "autoscalelua"
		}
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		e.cfg.Identity = host + "_" + hex.EncodeToString(b[:])
	}
	empty := ""
	e.holder.Store(&empty)
	return e, nil
}

// Identity returns this replica's identity in the Lease.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Leader returns the identity of the Lease's holder as last read, "" when none
// (never read, free or released).
func (e *Elector) Leader() string { return *e.holder.Load() }

// IsLeader reports whether this replica holds the Lease and renewed it less than
// RenewDeadline ago. It does not block.
func (e *Elector) IsLeader() bool {
	if !e.leading.Load() {
		return false
	}
	return e.clock.Now().UnixNano()-e.renewedAt.Load() < int64(e.cfg.RenewDeadline)
}

// Term returns the fencing token of this replica's leadership while it leads
// ([Elector.IsLeader]), and 0 otherwise: the Lease's leaseTransitions, plus
// one, as this replica last wrote it. The API server counts a transition each
// time the holder changes, so a new leader's term is higher than every earlier
// leader's; the scaling loop puts it in its scale requests
// ([autoscale.Fencer]) so that consumers order decisions across a change of
// leader whatever the replicas' clocks say.
func (e *Elector) Term() uint64 {
	if !e.IsLeader() {
		return 0
	}
	return e.term.Load()
}

// Run competes for the Lease, leads while it holds it, and competes again after
// losing it, until ctx ends; it then releases the Lease if it holds it and returns
// ctx's error. It returns [ErrElectorRunning] when called while running.
func (e *Elector) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrElectorRunning
	}
	defer e.running.Store(false)
	lock := &trackingLock{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
			Client:     e.client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
		},
		e: e,
	}
	lec := leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Namespace + "/" + e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			// Leadership is tracked by the lock's writes, which happen on this
			// goroutine in order; the callback goroutines client-go starts would
			// race with them.
			OnStartedLeading: func(context.Context) {},
			OnStoppedLeading: func() { e.stopLeading() },
		},
	}
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(e.logger.Handler()))
	for {
		le, err := leaderelection.NewLeaderElector(lec)
		if err != nil {
			return fmt.Errorf("kubernetes: elector: %w", err)
		}
		le.Run(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		e.logger.LogAttrs(ctx, slog.LevelWarn, "kubernetes: lost the lease; competing again",
			slog.String("lease", lec.Name), slog.String("identity", e.cfg.Identity))
	}
}

func (e *Elector) renewed(start time.Time) {
	e.renewedAt.Store(start.UnixNano())
	e.mu.Lock()
	began := !e.leading.Swap(true)
	if began {
		e.termCtx, e.termCancel = context.WithCancel(context.Background())
	}
	e.mu.Unlock()
	if began {
		e.logger.Info("kubernetes: leading", slog.String("lease", e.cfg.Namespace+"/"+e.cfg.Name), slog.String("identity", e.cfg.Identity))
		if e.onChange != nil {
			e.onChange(true)
		}
	}
}

// stopLeading ends leadership (it begins only through renewed): it cancels the gated
// actuator calls in flight and waits for them to return.
func (e *Elector) stopLeading() {
	e.mu.Lock()
	ended := e.leading.Swap(false)
	cancel := e.termCancel
	e.termCancel = nil
	e.mu.Unlock()
	if ended {
		cancel()
		e.inFlight.Wait()
		e.logger.Info("kubernetes: stopped leading", slog.String("lease", e.cfg.Namespace+"/"+e.cfg.Name), slog.String("identity", e.cfg.Identity))
		if e.onChange != nil {
			e.onChange(false)
		}
	}
}

// trackingLock wraps the Lease lock so that leadership follows the writes: a
// successful write of our identity (re)starts leadership and dates it; a write of
// another record (client-go's release) ends it before it is sent.
type trackingLock struct {
	resourcelock.Interface
	e *Elector
}

func (l *trackingLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	if err == nil && rec != nil {
		h := rec.HolderIdentity
		l.e.holder.Store(&h)
	}
	return rec, raw, err
}

func (l *trackingLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, rec, l.Interface.Create)
}

func (l *trackingLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, rec, l.Interface.Update)
}

func (l *trackingLock) write(ctx context.Context, rec resourcelock.LeaderElectionRecord, w func(context.Context, resourcelock.LeaderElectionRecord) error) error {
	mine := rec.HolderIdentity == l.Identity()
	if !mine {
		l.e.stopLeading()
	}
	start := l.e.clock.Now()
	if err := w(ctx, rec); err != nil {
		return err
	}
	h := rec.HolderIdentity
	l.e.holder.Store(&h)
	if mine {
		l.e.term.Store(uint64(max(rec.LeaderTransitions, 0)) + 1)
		l.e.renewed(start)
	}
	return nil
}

// ErrNotLeader is returned by the actuator of [Elector.Gate] when this replica does
// not lead. It is marked [actuator.Permanent].
var ErrNotLeader = errors.New("kubernetes: not the leader")

// Gate returns an actuator that calls a only while this replica leads, so that
// actuations of two replicas never overlap even across a change of leader: a call
// made while not leading returns [ErrNotLeader] at once; a call made while leading
// gets a context that ends when leadership ends, and at the latest RenewDeadline
// after the last renewal started (before any other replica may take the Lease over);
// and the Lease is released only after the calls in flight have returned. Use it
// together with autoscale.WithElector: the loop then decides on every replica but
// actuates on the leader only.
//
// The result implements [actuator.ReplicaReader] when a does (reads are not gated).
// It is safe for concurrent use if a is.
func (e *Elector) Gate(a actuator.Actuator) actuator.Actuator {
	g := &gate{e: e, a: a}
	if rr, ok := a.(actuator.ReplicaReader); ok {
		return &gateReader{gate: g, rr: rr}
	}
	return g
}

type gate struct {
	e *Elector
	a actuator.Actuator
}

func (g *gate) Scale(ctx context.Context, req actuator.Request) error {
	if g.a == nil {
		return actuator.Permanent(fmt.Errorf("%w: nil actuator passed to Gate", actuator.ErrInvalidRequest))
	}
	ctx, done, ok := g.e.enter(ctx)
	if !ok {
		return actuator.Permanent(fmt.Errorf("%w: %s does not hold lease %s/%s", ErrNotLeader, g.e.cfg.Identity, g.e.cfg.Namespace, g.e.cfg.Name))
	}
	defer done()
	return g.a.Scale(ctx, req)
}

type gateReader struct {
	*gate
	rr actuator.ReplicaReader
}

func (g *gateReader) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	return g.rr.Replicas(ctx, t)
}

// enter admits a gated call while leading: it returns a context bounded by the
// term and the renewal deadline, and a function to call when the call returns.
func (e *Elector) enter(ctx context.Context) (context.Context, func(), bool) {
	e.mu.Lock()
	if !e.IsLeader() || e.termCancel == nil {
		e.mu.Unlock()
		return nil, nil, false
	}
	e.inFlight.Add(1)
	term := e.termCtx
	e.mu.Unlock()
	// The deadline is on the real clock: it bounds a real API call.
	left := time.Duration(e.renewedAt.Load() + int64(e.cfg.RenewDeadline) - e.clock.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, left)
	stop := context.AfterFunc(term, cancel)
	return ctx, func() {
		stop()
		cancel()
		e.inFlight.Done()
	}, true
}
