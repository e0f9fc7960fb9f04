package simulate_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestSummaryAgreesWithTimeline checks every figure a run's summary states against
// the run's own timeline (what its CSV holds) and scale events, recomputed here from
// their definitions: a reader who plots the CSV sees what the summary says.
func TestSummaryAgreesWithTimeline(t *testing.T) {
	scenarios := append(simulate.Standard(), simulate.Extra()...)
	policies := []string{"kpa_go", "target_tracking_go"}
	if raceEnabled {
		for i := range scenarios {
			scenarios[i] = lighter(scenarios[i])
		}
		policies = policies[:1]
	}
	for _, sc := range scenarios {
		for _, name := range policies {
			t.Run(sc.Name+"/"+name, func(t *testing.T) {
				res := run(t, sc, mustShipped(t, name), 1)
				checkSummary(t, sc, res)
			})
		}
	}
}

func checkSummary(t *testing.T, sc simulate.Scenario, res *simulate.Result) {
	t.Helper()
	s, tl := res.Summary, res.Timeline
	if want := int(sc.Duration / time.Second); len(tl) != want {
		t.Fatalf("timeline has %d seconds, want %d", len(tl), want)
	}
	var sum simulate.Sample
	peak := 0
	var lo50, hi50, lo99, hi99 time.Duration = math.MaxInt64, 0, math.MaxInt64, 0
	for _, x := range tl {
		sum.Arrivals += x.Arrivals
		sum.Served += x.Served
		sum.Shed += x.Shed
		sum.Failed += x.Failed
		sum.Slow += x.Slow
		peak = max(peak, x.Replicas+x.Draining)
		if x.Served+x.Failed > 0 {
			lo50, hi50 = min(lo50, x.P50), max(hi50, x.P50)
			lo99, hi99 = min(lo99, x.P99), max(hi99, x.P99)
		}
	}
	counts := []struct {
		name      string
		got, want uint64
	}{
		{"requests", s.Requests, sum.Arrivals},
		{"served", s.Served, sum.Served},
		{"shed", s.Shed, sum.Shed},
		{"failed", s.Failed, sum.Failed},
		{"slow", s.Slow, sum.Slow},
		{"violations", s.Violations, sum.Violations()},
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("%s = %d, the timeline sums to %d", c.name, c.got, c.want)
		}
	}
	if sum.Arrivals > 0 {
		if want := float64(sum.Violations()) / float64(sum.Arrivals); !near(s.ViolationRate, want, 1e-12) {
			t.Errorf("violation rate = %v, the timeline gives %v", s.ViolationRate, want)
		}
	}
	last := tl[len(tl)-1]
	if !near(s.ReplicaSeconds, last.ReplicaSeconds, 1e-9) {
		t.Errorf("replica-seconds = %v, the timeline ends at %v", s.ReplicaSeconds, last.ReplicaSeconds)
	}
	if want := last.ReplicaSeconds / sc.Duration.Seconds(); !near(s.MeanReplicas, want, 1e-9) {
		t.Errorf("mean replicas = %v, the timeline gives %v", s.MeanReplicas, want)
	}
	// The peak can fall between two seconds' ends (a replica that finished draining in
	// the second a scale-up began), never below what a second's end shows.
	if s.PeakReplicas < peak || s.PeakReplicas > peak+maxStep(res.Scales) {
		t.Errorf("peak replicas = %d, the timeline's peak is %d", s.PeakReplicas, peak)
	}
	// A quantile over all seconds lies between the seconds' own quantiles.
	if sum.Served+sum.Failed > 0 {
		if s.P50 < lo50 || s.P50 > hi50 {
			t.Errorf("p50 = %v, outside the seconds' p50 range [%v, %v]", s.P50, lo50, hi50)
		}
		if s.P99 < lo99 || s.P99 > hi99 {
			t.Errorf("p99 = %v, outside the seconds' p99 range [%v, %v]", s.P99, lo99, hi99)
		}
		if s.Max < hi99 {
			t.Errorf("max = %v, below a second's p99 %v", s.Max, hi99)
		}
	}
	// Scale events: each one the timeline's spec count shows at the end of its second.
	if s.ScaleEvents != len(res.Scales) {
		t.Errorf("scale events = %d, %d recorded", s.ScaleEvents, len(res.Scales))
	}
	for i, e := range res.Scales {
		sec := int(e.At / time.Second)
		if i+1 < len(res.Scales) && int(res.Scales[i+1].At/time.Second) == sec {
			continue
		}
		if sec < len(tl) && tl[sec].Replicas != e.To {
			t.Errorf("scale event %+v: the timeline shows %d replicas at the end of second %d", e, tl[sec].Replicas, sec)
		}
	}
	if want := simulate.Flaps(res.Scales, s.FlapWindow); s.Flaps != want {
		t.Errorf("flaps = %d, the scale events give %d", s.Flaps, want)
	}
	checkReactions(t, sc, res)
	// What String prints is these figures.
	str := s.String()
	for _, line := range []string{
		fmt.Sprintf("requests:        %d\n", sum.Arrivals),
		fmt.Sprintf("replica-seconds: %.0f\n", last.ReplicaSeconds),
		fmt.Sprintf("scale events:    %d\n", len(res.Scales)),
	} {
		if !strings.Contains(str, line) {
			t.Errorf("summary lacks %q:\n%s", line, str)
		}
	}
	for _, r := range s.Reactions {
		if line := fmt.Sprintf("at %s: %.0f -> %.0f rps", r.At, r.From, r.To); !strings.Contains(str, line) {
			t.Errorf("summary lacks %q:\n%s", line, str)
		}
	}
}

// checkReactions checks each load change against the offered rate in the timeline:
// it begins where the rate crossed half again (or two thirds) of the level before, it
// goes from that level to the extreme the 10 s mean reaches before the next change,
// a step's figures are the step's rates, and the reaction time is when capacity began
// to cover the load for 10 s and through its new level (a rise), or the first
// scale-down (a fall).
func checkReactions(t *testing.T, sc simulate.Scenario, res *simulate.Result) {
	t.Helper()
	s, tl := res.Summary, res.Timeline
	const smooth = 10
	mean := make([]float64, len(tl))
	for i := range tl {
		var acc float64
		lo := max(0, i-smooth+1)
		for k := lo; k <= i; k++ {
			acc += tl[k].Offered
		}
		mean[i] = acc / float64(i-lo+1)
	}
	level := mean[0]
	perReplica := sc.Service.Capacity()
	var n int
	var total, longest time.Duration
	for k, r := range s.Reactions {
		at := int(r.At / time.Second)
		stop := len(tl)
		if k+1 < len(s.Reactions) {
			stop = int(s.Reactions[k+1].At / time.Second)
		}
		if !near(r.From, level, 1e-9) {
			t.Errorf("change %d %+v: from %v, the level before was %v", k, r, r.From, level)
		}
		crossed := func(rate float64) bool {
			if r.Up {
				return rate >= 1.5*r.From && rate-r.From >= perReplica/2
			}
			return rate <= r.From/1.5 && r.From-rate >= perReplica/2
		}
		off := tl[at].Offered
		if !crossed(off) {
			t.Errorf("change %d %+v: the offered rate at its start, %v, has not crossed the threshold", k, r, off)
		}
		if at > 0 && crossed(tl[at-1].Offered) {
			t.Errorf("change %d %+v: the offered rate had crossed already at %ds (%v)", k, r, at-1, tl[at-1].Offered)
		}
		extreme := mean[at]
		for i := at; i < stop; i++ {
			if r.Up {
				extreme = max(extreme, mean[i])
			} else {
				extreme = min(extreme, mean[i])
			}
		}
		if !near(r.To, extreme, 1e-9) {
			t.Errorf("change %d %+v: to %v, the 10 s mean reaches %v before the next change", k, r, r.To, extreme)
		}
		if steady(tl, at, min(at+smooth, stop)) && !near(r.To, off, 1e-9) {
			t.Errorf("change %d %+v: a step to %v rps", k, r, off)
		}
		if at >= smooth && steady(tl, at-smooth, at) && !near(r.From, tl[at-1].Offered, 1e-9) {
			t.Errorf("change %d %+v: a step from %v rps", k, r, tl[at-1].Offered)
		}
		level = r.To

		after := time.Duration(-1)
		if r.Up {
			// The first covered second from which capacity covered the load for 10 s
			// and through the first second the 10 s mean reached its new level.
			settled := at
			for settled < stop-1 && !near(mean[settled], r.To, 1e-9) {
				settled++
			}
			for from := at; from < stop && after < 0; from++ {
				i := from
				for i < stop && float64(tl[i].Ready)*perReplica >= tl[i].Offered {
					i++
				}
				if i-from >= smooth && i-1 >= settled {
					after = time.Duration(from-at) * time.Second
				}
			}
			d := after
			if d < 0 {
				d = sc.Duration - r.At
			}
			n++
			total += d
			longest = max(longest, d)
		} else {
			for _, e := range res.Scales {
				if e.At >= r.At && e.At < time.Duration(stop)*time.Second && e.To < e.From {
					after = e.At - r.At
					break
				}
			}
		}
		if r.After != after {
			t.Errorf("change %d %+v: reaction %v, the timeline gives %v", k, r, r.After, after)
		}
	}
	var mean0 time.Duration
	if n > 0 {
		mean0 = (total / time.Duration(n)).Round(time.Second)
	}
	if s.MeanReaction != mean0 || s.MaxReaction != longest {
		t.Errorf("reaction mean %v, max %v; the changes give %v, %v", s.MeanReaction, s.MaxReaction, mean0, longest)
	}
}

// steady reports whether the offered rate is the same over tl[from:to].
func steady(tl []simulate.Sample, from, to int) bool {
	for i := from + 1; i < to; i++ {
		if tl[i].Offered != tl[from].Offered {
			return false
		}
	}
	return to > from
}

func maxStep(events []simulate.ScaleEvent) int {
	m := 0
	for _, e := range events {
		m = max(m, e.To-e.From)
	}
	return m
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
