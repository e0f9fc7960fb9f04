package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/luabind"
)

// soakTimes are the soak's timings: a fault every FaultEvery from FaultFirst on, in
// turn, and a sample every SampleEvery.
type soakTimes struct {
	FaultEvery, FaultFirst time.Duration
	KillRestart            time.Duration // a killed replica is replaced after this
	SlowFor, ActuatorFails time.Duration // how long a slowdown and an actuator outage last
	SampleEvery            time.Duration
}

// defaultSoak is -soak's timings; the faults come off the minute, where the samples
// are taken.
var defaultSoak = soakTimes{FaultEvery: 30 * time.Second, FaultFirst: 15 * time.Second, KillRestart: 5 * time.Second,
	SlowFor: 20 * time.Second, ActuatorFails: 20 * time.Second, SampleEvery: time.Minute}

// slowFactor is how much the slow fault slows a replica.
const slowFactor = 10

// brokenPolicy is the soak's broken reload: it does not compile.
const brokenPolicy = "function on_tick(m, state) return {"

// soak is the -soak mode: while the load plays, it injects a fault every 30 s (a
// backend killed, a backend slowed 10×, the actuator failing for 20 s, a broken policy
// reload), prints the heap and the goroutines every minute, and at the end says
// whether they stayed flat, every request was accounted for and nothing panicked.
type soak struct {
	g     *gateway
	out   io.Writer
	times soakTimes

	failing        atomic.Bool  // the actuator fails while set
	refused        atomic.Int64 // the calls it failed
	faults         []string     // what was injected, in order; owned by run
	reloadAccepted int          // broken reloads that were not refused; owned by run
	panics         atomic.Int64
	samples        []sample // owned by run
	period         time.Duration
}

type sample struct {
	at         time.Duration
	heap       uint64 // live heap after a GC, bytes
	goroutines int
	replicas   int
}

// failingActuator is the fleet as the loop sees it in a soak: it refuses to scale
// while the soak says so, as a Kubernetes API server that is down would.
type failingActuator struct {
	*fleet
	s *soak
}

var errActuatorDown = errors.New("soak: the actuator is down (injected fault)")

func (a failingActuator) Scale(ctx context.Context, req actuator.Request) error {
	if a.s.failing.Load() {
		a.s.refused.Add(1)
		return errActuatorDown
	}
	return a.fleet.Scale(ctx, req)
}

func (a failingActuator) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	if a.s.failing.Load() {
		a.s.refused.Add(1)
		return 0, errActuatorDown
	}
	return a.fleet.Replicas(ctx, t)
}

var (
	_ actuator.Actuator      = failingActuator{}
	_ actuator.ReplicaReader = failingActuator{}
)

// panicWatch is the gateway server's error log in a soak: it passes lines through
// and counts the panics that net/http recovered in a handler.
func (s *soak) panicWatch() io.Writer { return panicWriter{s} }

type panicWriter struct{ s *soak }

func (w panicWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("panic")) {
		w.s.panics.Add(1)
	}
	return w.s.out.Write(p)
}

// run injects the faults and takes the samples until ctx ends.
func (s *soak) run(ctx context.Context) {
	start := time.Now()
	var timers sync.WaitGroup
	defer timers.Wait()
	after := func(d time.Duration, f func()) {
		timers.Go(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			f() // restore even when ctx ends first
		})
	}
	nextFault, nextSample := start.Add(s.times.FaultFirst), start.Add(s.times.SampleEvery)
	s.sample(0)
	for n := 0; ; {
		isSample := !nextSample.After(nextFault)
		next := nextFault
		if isSample {
			next = nextSample
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			if time.Until(nextSample) < s.times.SampleEvery/30 {
				s.sample(time.Since(start)) // the last minute's, as the run ends on it
			}
			return
		case <-t.C:
		}
		now := time.Since(start)
		if isSample {
			s.sample(now)
			nextSample = nextSample.Add(s.times.SampleEvery)
			continue
		}
		nextFault = nextFault.Add(s.times.FaultEvery)
		var what string
		switch n % 4 {
		case 0:
			id := s.g.fleet.kill(s.times.KillRestart)
			what = fmt.Sprintf("killed %s (replaced after %v)", id, s.times.KillRestart)
		case 1:
			id := s.g.fleet.slow(slowFactor)
			after(s.times.SlowFor, s.g.fleet.unslow)
			what = fmt.Sprintf("slowed %s %d× for %v", id, slowFactor, s.times.SlowFor)
		case 2:
			s.refused.Store(0)
			s.failing.Store(true)
			after(s.times.ActuatorFails, func() {
				s.failing.Store(false)
				fmt.Fprintf(s.out, "soak %7s actuator back: it refused %d calls (scale and replica reads)\n", fmtAt(time.Since(start)), s.refused.Load())
			})
			what = fmt.Sprintf("actuator failing for %v", s.times.ActuatorFails)
		case 3:
			name, gen := s.g.policy.Script()
			err := s.g.policy.Reload(luabind.FromString("broken.lua", brokenPolicy))
			name2, gen2 := s.g.policy.Script()
			what = fmt.Sprintf("broken policy reload: %v; running %s generation %d", err, name2, gen2)
			if err == nil || name2 != name || gen2 != gen {
				what += fmt.Sprintf(" (FAIL: was %s generation %d)", name, gen)
				s.reloadAccepted++
			}
		}
		n++
		s.faults = append(s.faults, what)
		fmt.Fprintf(s.out, "soak %7s fault: %s\n", fmtAt(now), what)
	}
}

func (s *soak) sample(at time.Duration) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	smp := sample{at: at, heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
	smp.replicas, _ = s.g.fleet.Replicas(context.Background(), actuator.Target{})
	s.samples = append(s.samples, smp)
	c := s.g.load.counts()
	fmt.Fprintf(s.out, "soak %7s heap %6.1f MiB  goroutines %4d  replicas %2d  sent %d: served %d, shed %d, throttled %d, errored %d\n",
		fmtAt(at), float64(smp.heap)/(1<<20), smp.goroutines, smp.replicas, c.Sent, c.Served, c.Shed, c.Throttled, c.Errored)
}

func fmtAt(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

// Flatness: a sample may exceed the one a load period earlier than the first after
// warm-up by this much, and no more.
const (
	heapGrowth      = 1.25
	heapSlack       = 4 << 20
	goroutineGrowth = 1.25
	goroutineSlack  = 30
)

// verdict checks what the soak saw: heap and goroutines flat after warm-up, the
// accounting exact on the client's side and the gateway's, no panic, every broken
// reload refused. It returns nil, or every failure.
func (s *soak) verdict(c counts) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The samples compared are those at the start of a load period (the same phase
	// of the flash sale, at its base rate), from the end of the first period on: the
	// first period is the warm-up.
	var same []sample
	for _, smp := range s.samples {
		if every := s.times.SampleEvery; s.period > 0 && smp.at >= s.period && (smp.at+every/2)%s.period < every {
			same = append(same, smp)
		}
	}
	flat := "heap and goroutines: fewer than two samples a load period apart after warm-up (run at least two periods); not checked"
	if len(same) >= 2 {
		base := same[0]
		for _, smp := range same[1:] {
			if float64(smp.heap) > heapGrowth*float64(base.heap)+heapSlack {
				fail("heap grew: %.1f MiB at %v, %.1f MiB at %v", float64(smp.heap)/(1<<20), fmtAt(smp.at), float64(base.heap)/(1<<20), fmtAt(base.at))
			}
			if float64(smp.goroutines) > goroutineGrowth*float64(base.goroutines)+goroutineSlack {
				fail("goroutines grew: %d at %v, %d at %v", smp.goroutines, fmtAt(smp.at), base.goroutines, fmtAt(base.at))
			}
		}
		flat = fmt.Sprintf("heap and goroutines: %d samples a load period apart after warm-up, none above %.2f× + %d MiB / %.2f× + %d of the one at %v",
			len(same), heapGrowth, heapSlack>>20, goroutineGrowth, goroutineSlack, fmtAt(base.at))
	}

	st := s.g.admission.Stats()
	if c.Sent == 0 || c.Served+c.Shed+c.Throttled+c.Errored != c.Sent {
		fail("client: sent %d != served %d + shed %d + throttled %d + errored %d", c.Sent, c.Served, c.Shed, c.Throttled, c.Errored)
	}
	if shed := st.Shed + st.QueueFull + st.QueueTimeout + st.Limited; c.Throttled != st.Throttled || c.Shed != shed {
		fail("client throttled %d shed %d, gateway throttled %d shed %d", c.Throttled, c.Shed, st.Throttled, shed)
	}
	if c.Served+c.Errored != st.Admitted {
		fail("client served %d + errored %d != gateway admitted %d", c.Served, c.Errored, st.Admitted)
	}
	if n := s.panics.Load(); n > 0 {
		fail("%d panics recovered by the server", n)
	}
	if s.reloadAccepted > 0 {
		fail("%d broken policy reloads were not refused", s.reloadAccepted)
	}
	fmt.Fprintf(s.out, "soak: %d faults injected; %s\n", len(s.faults), flat)
	fmt.Fprintf(s.out, "soak: accounting: sent %d = served %d + shed %d + throttled %d + errored %d; gateway admitted %d, shed %d, throttled %d\n",
		c.Sent, c.Served, c.Shed, c.Throttled, c.Errored, st.Admitted, st.Shed+st.QueueFull+st.QueueTimeout+st.Limited, st.Throttled)
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(s.out, "soak: FAILED\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return err
	}
	fmt.Fprintln(s.out, "soak: ok (no panic)")
	return nil
}
