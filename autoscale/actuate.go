package autoscale

import (
	"context"
	"log/slog"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// job is one dispatched actuator request.
type job struct {
	req  actuator.Request
	from int
	at   time.Time // wall time of dispatch
}

// dispatch hands req to t's worker, starting one if none runs. A request still pending
// is superseded (latest wins), and so is one in flight: its context is cancelled, so
// that its attempt ends and it is not retried. It runs under Loop.stepMu, never after
// Close.
func (l *Loop) dispatch(t *target, req actuator.Request, from int) {
	j := &job{req: req, from: from, at: time.Now()}
	var ctx context.Context
	t.mu.Lock()
	old := t.pending
	t.pending = j
	start := !t.running
	if start {
		// The worker's calls end when Close cancels this; Close runs after every
		// dispatch (both hold stepMu), so it sees the cancel of every worker.
		ctx, t.cancel = context.WithCancel(context.Background())
	}
	t.running = true
	if t.stopJob != nil {
		t.stopJob()
	}
	t.mu.Unlock()
	if old != nil {
		l.finish(t, old, ActuationResult{Done: true, Superseded: true, Err: "superseded before it started"})
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
	if start {
		l.idleMu.Lock()
		if l.active == 0 {
			l.idle = make(chan struct{})
		}
		l.active++
		l.idleMu.Unlock()
		l.wg.Go(func() { l.work(ctx, t) })
	}
}

// work applies t's pending requests until there are none, or ctx ends.
func (l *Loop) work(ctx context.Context, t *target) {
	defer func() {
		l.idleMu.Lock()
		l.active--
		if l.active == 0 {
			close(l.idle)
		}
		l.idleMu.Unlock()
	}()
	for {
		t.mu.Lock()
		j := t.pending
		t.pending, t.inflight = nil, j
		if j == nil {
			t.running = false
			t.cancel()
			t.cancel = nil
			t.mu.Unlock()
			return
		}
		jctx, stop := context.WithCancel(ctx)
		t.stopJob = stop
		t.mu.Unlock()
		select { // forget the wake-up that announced j
		case <-t.wake:
		default:
		}
		res := l.call(jctx, t, j)
		t.mu.Lock()
		t.inflight, t.stopJob = nil, nil
		t.mu.Unlock()
		stop()
		if res.Err == "" {
			t.applied(j.req.Time, j.from, j.req.Replicas)
		}
		l.finish(t, j, res)
	}
}

// call makes the attempts for j: each under the timeout, retried with exponential
// back-off and full jitter on errors not marked permanent, until it succeeds, the loop
// closes or a newer request supersedes it (ctx is j's own: dispatch cancels it then).
// The loop is the module's one retrier: actuators make one attempt per call. An error carrying a requested wait
// ([actuator.RetryAfter]) delays the next attempt by at least that wait, capped by
// RetryMax.
func (l *Loop) call(ctx context.Context, t *target, j *job) ActuationResult {
	var (
		err error
		res ActuationResult
	)
	for attempt := range l.act.Attempts {
		if attempt > 0 {
			d := actuator.Backoff(attempt-1, l.act.RetryBase, l.act.RetryMax, l.rand.Float64())
			if w, ok := actuator.RetryAfterOf(err); ok {
				// The other side asked for a wait (Retry-After): honour it, capped
				// by the largest back-off.
				d = max(d, min(w, l.act.RetryMax))
			}
			if !l.backoff(ctx, t, d) {
				break
			}
		}
		actx, cancel := context.WithTimeout(ctx, l.act.Timeout)
		err = t.act.Scale(actx, j.req)
		cancel()
		res.Attempts++
		if err == nil || actuator.IsPermanent(err) || ctx.Err() != nil {
			break
		}
		if l.superseded(t) {
			break
		}
	}
	res.Done = true
	res.Duration = time.Since(j.at)
	if err != nil {
		res.Err = err.Error()
		res.Superseded = l.superseded(t)
	}
	return res
}

func (l *Loop) superseded(t *target) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending != nil
}

// backoff waits d on the loop's clock; false when ctx ended (the loop closed) or a
// newer request arrived meanwhile.
func (l *Loop) backoff(ctx context.Context, t *target, d time.Duration) bool {
	if l.superseded(t) {
		return false
	}
	timer := l.clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C():
		return true
	case <-ctx.Done():
		return false
	case <-t.wake:
		return false
	}
}

// finish records the outcome of j.
func (l *Loop) finish(t *target, j *job, res ActuationResult) {
	l.ring.update(j.req.DecisionID, func(d *Decision) { d.Actuation = res })
	ctx := context.Background()
	switch {
	case res.Err == "":
		l.logger.LogAttrs(ctx, slog.LevelInfo, "autoscale: scaled",
			slog.String("id", j.req.DecisionID), slog.String("target", t.cfg.Name),
			slog.Int("replicas", j.req.Replicas), slog.Int("attempts", res.Attempts),
			slog.Duration("duration", res.Duration))
	case res.Superseded:
		l.logger.LogAttrs(ctx, slog.LevelDebug, "autoscale: superseded",
			slog.String("id", j.req.DecisionID), slog.String("target", t.cfg.Name),
			slog.String("error", res.Err))
	default:
		l.tel.actuatorError(ctx, t)
		l.logger.LogAttrs(ctx, slog.LevelWarn, "autoscale: actuator failed",
			slog.String("id", j.req.DecisionID), slog.String("target", t.cfg.Name),
			slog.Int("replicas", j.req.Replicas), slog.Int("attempts", res.Attempts),
			slog.String("error", res.Err))
	}
}
