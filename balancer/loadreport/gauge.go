package loadreport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// DefaultJSONMaxBody bounds the document a [JSON] source reads.
const DefaultJSONMaxBody = 1 << 20

// ErrBadReading means a gauge's source returned NaN or an infinity, or a JSON
// document without a number at the member path.
var ErrBadReading = errors.New("loadreport: bad gauge reading")

// GaugeConfig configures a [Gauge]. Scope and Source are required.
type GaugeConfig struct {
	// Scope and Key name the window the readings go into: a Lua on_tick reads it as
	// m.scope(Scope, Key, span). Use a scope of your own ("gpu"), not one of the
	// library's (route, tenant, backend, model, target).
	Scope metrics.Scope
	Key   string
	// Source reads the gauge once; it should return when ctx is done. [JSON] makes
	// one that reads a member of a JSON document at a URL.
	Source func(ctx context.Context) (float64, error)
	// Interval is the period of the readings. Zero means 1 s.
	Interval time.Duration
	// Timeout bounds one reading (through its ctx). Zero means 500 ms, or the
	// interval if shorter; at most Interval.
	Timeout time.Duration
	// MaxAge is the age past which the last reading is stale ([Gauge.Fresh]). Zero
	// means three intervals.
	MaxAge time.Duration
}

func (c GaugeConfig) withDefaults() GaugeConfig {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultTimeout, c.Interval)
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAgeIntervals * c.Interval
	}
	return c
}

// Validate reports every setting out of range.
func (c GaugeConfig) Validate() error {
	var errs []error
	d := c.withDefaults()
	if c.Scope == "" {
		errs = append(errs, fmt.Errorf("%w: gauge without a scope", ErrInvalidConfig))
	}
	if c.Source == nil {
		errs = append(errs, fmt.Errorf("%w: gauge %s/%s without a source", ErrInvalidConfig, c.Scope, c.Key))
	}
	if d.Interval < 0 || d.Timeout < 0 || d.Timeout > d.Interval || d.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w: gauge interval %v, timeout %v, max age %v: want 0 < timeout <= interval and max age > 0",
			ErrInvalidConfig, c.Interval, c.Timeout, c.MaxAge))
	}
	return errors.Join(errs...)
}

// Gauge polls one number on an interval into a window of a [metrics.Registry] — a
// GPU's utilization from a sidecar, a queue's depth from a broker's API — for a
// scaling policy to read. Each good reading is recorded as one observation whose
// Value is the reading and whose Latency is the time the reading took. So over a
// span, a snapshot's Count is the number of readings, Value / Count their mean, and
// a Count of 0 means no reading in the span.
//
// In Lua:
//
//	local g = m.scope("gpu", "model-a", 3)     -- the last 3 s: up to 3 readings at 1 s
//	if g.count > 0 and g.value / g.count > 0.8 then ... end
//
// A reading that fails (the source's error, NaN or an infinity) records nothing and
// is counted, so a gauge whose source is gone is stale: a span no longer than the
// gauge's MaxAge shows count 0, and the policy should hold rather than read 0 as a
// value. [Gauge.Fresh] says the same to Go.
//
// A Gauge makes its window when it is made, so m.scope knows the scope before the
// first reading. It starts no goroutine until [Gauge.Run]. It is safe for concurrent
// use.
type Gauge struct {
	cfg   GaugeConfig
	clock metrics.Clock
	w     *metrics.Window

	last                      atomic.Pointer[reading]
	polls, failures, invalids atomic.Uint64
}

type reading struct {
	v  float64
	at time.Time
}

// NewGauge returns a gauge recording into reg's window (cfg.Scope, cfg.Key), on
// reg's clock. Bad settings wrap [ErrInvalidConfig], all reported at once.
func NewGauge(reg *metrics.Registry, cfg GaugeConfig) (*Gauge, error) {
	err := cfg.Validate()
	if reg == nil {
		err = errors.Join(err, fmt.Errorf("%w: nil registry", ErrInvalidConfig))
	}
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Gauge{cfg: cfg, clock: reg.Clock(), w: reg.Window(cfg.Scope, cfg.Key)}, nil
}

// Run reads the gauge at once and then each interval until ctx is done, and returns
// ctx's error. Failed readings are counted ([Gauge.Stats]), not returned.
func (g *Gauge) Run(ctx context.Context) error {
	_ = g.Poll(ctx)
	return metrics.Every(ctx, g.clock, g.cfg.Interval, func() { _ = g.Poll(ctx) })
}

// Poll reads the gauge once, within the timeout, and records a good reading. It
// returns the source's error, or one wrapping [ErrBadReading].
func (g *Gauge) Poll(ctx context.Context) error {
	g.polls.Add(1)
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	start := g.clock.Now()
	v, err := g.cfg.Source(ctx)
	if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		g.invalids.Add(1)
		return fmt.Errorf("%w: %s/%s read %v", ErrBadReading, g.cfg.Scope, g.cfg.Key, v)
	}
	if err != nil {
		if errors.Is(err, ErrBadReading) {
			g.invalids.Add(1)
		} else {
			g.failures.Add(1)
		}
		return fmt.Errorf("loadreport: gauge %s/%s: %w", g.cfg.Scope, g.cfg.Key, err)
	}
	now := g.clock.Now()
	g.w.RecordAt(now, metrics.Observation{Value: v, Latency: now.Sub(start)})
	g.last.Store(&reading{v: v, at: now})
	return nil
}

// Last returns the latest good reading and when it was read; ok is false before the
// first.
func (g *Gauge) Last() (v float64, at time.Time, ok bool) {
	r := g.last.Load()
	if r == nil {
		return 0, time.Time{}, false
	}
	return r.v, r.at, true
}

// Fresh returns the latest good reading and whether it is at most MaxAge old at now.
func (g *Gauge) Fresh(now time.Time) (float64, bool) {
	v, at, ok := g.Last()
	return v, ok && now.Sub(at) <= g.cfg.MaxAge
}

// Window returns the window the gauge records into.
func (g *Gauge) Window() *metrics.Window { return g.w }

// GaugeStats counts a gauge's readings.
type GaugeStats struct {
	// Polls counts readings tried; Failures those whose source failed; Invalid those
	// that returned NaN, an infinity or no number at the JSON member path.
	Polls, Failures, Invalid uint64
}

// Stats returns the gauge's counts.
func (g *Gauge) Stats() GaugeStats {
	return GaugeStats{Polls: g.polls.Load(), Failures: g.failures.Load(), Invalid: g.invalids.Load()}
}

// JSON returns a gauge source that GETs rawURL and reads the number at member, a path
// of object member names and array indexes separated by dots ("gpu.utilization",
// "gpus.0.util"), from the JSON document it answers. An answer other than 2xx, a
// document larger than [DefaultJSONMaxBody], or no number at the path is an error
// (the last wrapping [ErrBadReading]). client nil means a client on
// [net/http.DefaultTransport].
func JSON(client *http.Client, rawURL, member string) (func(ctx context.Context) (float64, error), error) {
	var errs []error
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%w: gauge url %q: want an http or https URL with a host", ErrInvalidConfig, rawURL))
	}
	path := strings.Split(member, ".")
	if member == "" || strings.Contains(member, "..") {
		errs = append(errs, fmt.Errorf("%w: gauge member path %q", ErrInvalidConfig, member))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	return func(ctx context.Context) (float64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode > 299 {
			return 0, fmt.Errorf("status %d", res.StatusCode)
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, DefaultJSONMaxBody+1))
		if err != nil {
			return 0, err
		}
		if len(body) > DefaultJSONMaxBody {
			return 0, fmt.Errorf("document larger than %d bytes", DefaultJSONMaxBody)
		}
		return jsonMember(body, path)
	}, nil
}

// jsonMember returns the number at path in the document.
func jsonMember(doc []byte, path []string) (float64, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadReading, err)
	}
	for i, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(x) {
				return 0, fmt.Errorf("%w: %s: no element %q", ErrBadReading, strings.Join(path[:i], "."), p)
			}
			v = x[n]
		default:
			v = nil
		}
		if v == nil {
			return 0, fmt.Errorf("%w: no member %s", ErrBadReading, strings.Join(path[:i+1], "."))
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: %s is a %T, not a number", ErrBadReading, strings.Join(path, "."), v)
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: %s = %s", ErrBadReading, strings.Join(path, "."), n)
	}
	return f, nil
}
