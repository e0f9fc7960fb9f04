package loadreport

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"

	"github.com/autoscalelua/autoscalelua/balancer"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Field names the [balancer.LoadReport] field a [Rule] fills.
type Field uint8

// The fields of a load report.
const (
	Utilization Field = iota + 1
	InFlight
	Queue
	RPS
	KVCache
)

var fieldNames = [...]string{Utilization: "utilization", InFlight: "in_flight", Queue: "queue", RPS: "rps", KVCache: "kv_cache"}

// String returns the field's name as the load-report header spells it ("kv_cache").
func (f Field) String() string {
	if f >= Utilization && f <= KVCache {
		return fieldNames[f]
	}
	return fmt.Sprintf("Field(%d)", uint8(f))
}

// Agg says how the series a rule matches are combined.
type Agg uint8

const (
	// Sum, the zero value, adds the matching series (requests over several engines
	// of one server, or over a model's LoRA adapters).
	Sum Agg = iota
	// Max takes the largest (a fraction such as KV-cache use over data-parallel
	// engines, where the fullest one is what a new request may meet).
	Max
)

// The bounds past which a value is absurd: a report holding one is invalid (counted,
// and the backend keeps its last good report). A page can say anything; a value past
// these is a bug or an attack, and would swamp any score it entered.
const (
	// MaxKVCache bounds KVCache, a fraction: 1 is full; the slack is for rounding
	// and for servers that count a preempted request's blocks twice.
	MaxKVCache = 1.5
	// MaxUtilization bounds Utilization, a busy fraction that may exceed 1 when
	// overcommitted.
	MaxUtilization = 100
	// MaxCount bounds InFlight and Queue.
	MaxCount = 1e9
	// MaxRPS bounds RPS, per second.
	MaxRPS = 1e9
)

// Errors a page is refused with, wrapped; [Scraper.Scrape] joins them per backend.
var (
	// ErrParse means the page is not in the Prometheus text format.
	ErrParse = errors.New("loadreport: malformed metrics page")
	// ErrInvalidValue means a matched sample is NaN, infinite or negative, or a field
	// is past its bound ([MaxKVCache] and the others).
	ErrInvalidValue = errors.New("loadreport: invalid value")
	// ErrNoMetrics means no rule of the mapping matched a series of the page: the
	// wrong mapping, or a server not yet serving its model.
	ErrNoMetrics = errors.New("loadreport: no mapped metric on the page")
	// ErrInvalidConfig is a bad option or mapping. It wraps [balancer.ErrInvalidConfig].
	ErrInvalidConfig = fmt.Errorf("loadreport: %w", balancer.ErrInvalidConfig)
)

// Rule maps one metric of a page to one field of a load report.
type Rule struct {
	// Field is the report's field the rule fills. Required.
	Field Field
	// Metric is the metric family's name as the page spells it
	// ("vllm:num_requests_waiting"). Required. Gauges, counters and untyped samples
	// are read; histograms and summaries never match.
	Metric string
	// Labels restrict the rule to the series whose labels have these values
	// (model_name: "llama"), exactly; a value "" matches a series without the label,
	// as in PromQL. Nil matches every series of the family.
	Labels map[string]string
	// Agg combines the matching series: [Sum] (the zero value) or [Max].
	Agg Agg
	// Rate makes the field the per-second increase of the combined value between two
	// scrapes of the same backend (for a counter such as
	// vllm:request_success_total → RPS). The first scrape, a decrease (the server
	// restarted) and [Mapping.Parse], which sees one page, leave the field 0.
	Rate bool
}

func (r Rule) matches(m *dto.Metric) bool {
	for k, want := range r.Labels {
		got := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				got = lp.GetValue()
				break
			}
		}
		if got != want {
			return false
		}
	}
	return true
}

// Mapping turns a metrics page into a load report. For each field, its rules are tried
// in their order and the first whose metric has a matching series on the page sets it
// (so vLLM's kv_cache_usage_perc is read, or else the older gpu_cache_usage_perc);
// fields no rule sets are 0.
//
// When no rule sets Utilization it is derived: the KV-cache use, raised to 1 while
// requests wait in the server's queue. A model server queues a request only when it
// cannot schedule it — its KV cache or its batch is full — so a queue says "busy"
// even when the cache figure does not. InFlight and Queue are rounded to integers.
//
// A Mapping is a plain value; [VLLM] and [SGLang] return fresh ones.
type Mapping struct {
	// Rules are the rules, tried in order per field.
	Rules []Rule
}

// VLLM returns the mapping for vLLM's /metrics page: vllm:num_requests_waiting →
// Queue, vllm:num_requests_running → InFlight, vllm:kv_cache_usage_perc (or else the
// older vllm:gpu_cache_usage_perc; both are fractions despite the name) → KVCache,
// the largest over engines, and the rate of vllm:request_success_total → RPS.
// Restrict it to one model with [Mapping.WithLabels]("model_name", ...).
func VLLM() Mapping {
	return Mapping{Rules: []Rule{
		{Field: Queue, Metric: "vllm:num_requests_waiting"},
		{Field: InFlight, Metric: "vllm:num_requests_running"},
		{Field: KVCache, Metric: "vllm:kv_cache_usage_perc", Agg: Max},
		{Field: KVCache, Metric: "vllm:gpu_cache_usage_perc", Agg: Max},
		{Field: RPS, Metric: "vllm:request_success_total", Rate: true},
	}}
}

// SGLang returns the mapping for SGLang's /metrics page (with --enable-metrics):
// sglang:num_queue_reqs → Queue, sglang:num_running_reqs → InFlight and
// sglang:token_usage (the fraction of the KV-cache token pool in use) → KVCache, the
// largest over tensor- or data-parallel ranks.
func SGLang() Mapping {
	return Mapping{Rules: []Rule{
		{Field: Queue, Metric: "sglang:num_queue_reqs"},
		{Field: InFlight, Metric: "sglang:num_running_reqs"},
		{Field: KVCache, Metric: "sglang:token_usage", Agg: Max},
	}}
}

// WithLabels returns a copy of m whose every rule also requires the label name to
// have value: VLLM().WithLabels("model_name", "llama") reads only llama's series.
func (m Mapping) WithLabels(name, value string) Mapping {
	out := Mapping{Rules: make([]Rule, len(m.Rules))}
	for i, r := range m.Rules {
		r.Labels = maps.Clone(r.Labels)
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[name] = value
		out.Rules[i] = r
	}
	return out
}

// Validate reports every bad rule at once.
func (m Mapping) Validate() error {
	var errs []error
	if len(m.Rules) == 0 {
		errs = append(errs, fmt.Errorf("%w: mapping without rules", ErrInvalidConfig))
	}
	for i, r := range m.Rules {
		if r.Field < Utilization || r.Field > KVCache {
			errs = append(errs, fmt.Errorf("%w: rule %d: unknown field %v", ErrInvalidConfig, i, r.Field))
		}
		if strings.TrimSpace(r.Metric) == "" {
			errs = append(errs, fmt.Errorf("%w: rule %d: empty metric name", ErrInvalidConfig, i))
		}
		if r.Agg > Max {
			errs = append(errs, fmt.Errorf("%w: rule %d: unknown aggregation %d", ErrInvalidConfig, i, r.Agg))
		}
	}
	return errors.Join(errs...)
}

// Parse reads one page in the Prometheus text format and maps it to a report (its At
// is zero). Rate rules need two pages and leave their field 0 here; the [Scraper]
// applies them. It returns an error wrapping [ErrParse], [ErrInvalidValue] or
// [ErrNoMetrics].
func (m Mapping) Parse(page []byte) (balancer.LoadReport, error) {
	vals, err := m.values(page)
	if err != nil {
		return balancer.LoadReport{}, err
	}
	return m.report(vals, nil, 0)
}

// value is what one rule read from a page.
type value struct {
	v     float64
	found bool
}

// values parses the page and returns what each rule read.
func (m Mapping) values(page []byte) ([]value, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	out := make([]value, len(m.Rules))
	for i, r := range m.Rules {
		f, ok := fams[r.Metric]
		if !ok {
			continue
		}
		for _, s := range f.GetMetric() {
			var x float64
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				x = s.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				x = s.GetCounter().GetValue()
			case dto.MetricType_UNTYPED:
				x = s.GetUntyped().GetValue()
			default:
				continue
			}
			if !r.matches(s) {
				continue
			}
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return nil, fmt.Errorf("%w: %s = %v", ErrInvalidValue, r.Metric, x)
			}
			switch {
			case !out[i].found:
				out[i].v = x
			case r.Agg == Max:
				out[i].v = max(out[i].v, x)
			default:
				out[i].v += x
			}
			out[i].found = true
		}
	}
	return out, nil
}

// report builds the report from the rules' values. prev holds the values of the
// backend's previous page and dt the seconds since it, for Rate rules (nil: none).
func (m Mapping) report(vals, prev []value, dt float64) (balancer.LoadReport, error) {
	var (
		f     [KVCache + 1]float64
		set   [KVCache + 1]bool
		found bool
	)
	for i, r := range m.Rules {
		v := vals[i]
		if !v.found {
			continue
		}
		found = true
		if set[r.Field] {
			continue
		}
		set[r.Field] = true
		if !r.Rate {
			f[r.Field] = v.v
			continue
		}
		if prev != nil && prev[i].found && dt > 0 && v.v >= prev[i].v {
			f[r.Field] = (v.v - prev[i].v) / dt
		}
	}
	if !found {
		return balancer.LoadReport{}, ErrNoMetrics
	}
	if !set[Utilization] {
		f[Utilization] = f[KVCache]
		if f[Queue] >= 0.5 {
			f[Utilization] = max(f[Utilization], 1)
		}
	}
	for _, c := range []struct {
		field Field
		bound float64
	}{{Utilization, MaxUtilization}, {InFlight, MaxCount}, {Queue, MaxCount}, {RPS, MaxRPS}, {KVCache, MaxKVCache}} {
		if !(f[c.field] <= c.bound) { // NaN too: a sum can overflow, a rate subtract infinities
			return balancer.LoadReport{}, fmt.Errorf("%w: %v = %v is past its bound %v", ErrInvalidValue, c.field, f[c.field], c.bound)
		}
	}
	return balancer.LoadReport{
		Utilization: f[Utilization],
		InFlight:    int64(math.Round(f[InFlight])),
		Queue:       int64(math.Round(f[Queue])),
		RPS:         f[RPS],
		KVCache:     f[KVCache],
	}, nil
}
