package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// ScopeBackendLoad is the registry scope into which active health checks record the
// backends' load reports (see the package documentation), keyed by backend id.
const ScopeBackendLoad metrics.Scope = "backend_load"

// DefaultLoadHeader is the response header read for a load report.
const DefaultLoadHeader = "Endpoint-Load-Metrics"

// ErrInvalidLoadReport is returned (wrapped) by [ParseLoadReport] and
// [ParseLoadReportJSON].
var ErrInvalidLoadReport = errors.New("balancer: invalid load report")

// LoadReport is what a backend says about its own load in answer to a health check.
// The format is described in the package documentation.
type LoadReport struct {
	// Utilization is the backend's busy fraction, usually 0..1 (more when
	// overcommitted).
	Utilization float64 `json:"utilization"`
	// InFlight is the requests the backend is serving.
	InFlight int64 `json:"in_flight"`
	// Queue is the requests waiting at the backend.
	Queue int64 `json:"queue"`
	// RPS is the backend's request rate, per second.
	RPS float64 `json:"rps"`
	// KVCache is a model server's KV-cache use, a fraction 0..1 (vLLM's
	// kv_cache_usage_perc, SGLang's token usage).
	KVCache float64 `json:"kv_cache"`
	// At is when the report was read (set by [Pool.ReportLoad]); pickers judge a
	// report stale by its age.
	At time.Time `json:"-"`
}

func (r LoadReport) validate() error {
	bad := func(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) || f < 0 }
	if bad(r.Utilization) || bad(r.RPS) || bad(r.KVCache) || r.InFlight < 0 || r.Queue < 0 {
		return fmt.Errorf("%w: negative or not finite value", ErrInvalidLoadReport)
	}
	return nil
}

// ParseLoadReport parses a load-report header value: comma-separated key=value pairs
// with the keys utilization, in_flight, queue, rps and kv_cache, optionally preceded by "TEXT "
// (as in the text form of gRPC's ORCA load reports). Unknown keys are ignored, so a
// backend may send more; a known key with a bad value is an error.
func ParseLoadReport(s string) (LoadReport, error) {
	var r LoadReport
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "TEXT ")
	if s == "" {
		return r, fmt.Errorf("%w: empty", ErrInvalidLoadReport)
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return LoadReport{}, fmt.Errorf("%w: %q is not key=value", ErrInvalidLoadReport, part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		var err error
		switch k {
		case "utilization":
			r.Utilization, err = strconv.ParseFloat(v, 64)
		case "rps":
			r.RPS, err = strconv.ParseFloat(v, 64)
		case "kv_cache":
			r.KVCache, err = strconv.ParseFloat(v, 64)
		case "in_flight":
			r.InFlight, err = strconv.ParseInt(v, 10, 64)
		case "queue":
			r.Queue, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return LoadReport{}, fmt.Errorf("%w: %s: %w", ErrInvalidLoadReport, k, err)
		}
	}
	if err := r.validate(); err != nil {
		return LoadReport{}, err
	}
	return r, nil
}

// ParseLoadReportJSON parses a JSON load report: an object with the optional numeric
// members utilization, in_flight, queue, rps and kv_cache; other members are ignored.
func ParseLoadReportJSON(data []byte) (LoadReport, error) {
	var r LoadReport
	if err := json.Unmarshal(data, &r); err != nil {
		return LoadReport{}, fmt.Errorf("%w: %w", ErrInvalidLoadReport, err)
	}
	if err := r.validate(); err != nil {
		return LoadReport{}, err
	}
	return r, nil
}

// HealthCheck configures active HTTP health checks. A check is a GET of Path on the
// backend's URL; a 2xx answer within Timeout passes, anything else fails. A healthy
// backend is marked down after Fall failures in a row and a down backend up again after
// Rise passes in a row (hysteresis, as HAProxy's rise/fall and Envoy's
// healthy/unhealthy thresholds). Backends start up. A backend down is not ready for new
// requests; its ejection state is separate.
type HealthCheck struct {
	// Path is the path checked. Zero means "/healthz".
	Path string
	// Interval is the period of the checks. Zero means 5 s.
	Interval time.Duration
	// Timeout bounds one check. Zero means 1 s; at most Interval.
	Timeout time.Duration
	// Rise is the passes in a row that bring a backend up. Zero means 2.
	Rise int
	// Fall is the failures in a row that take a backend down. Zero means 3.
	Fall int
	// LoadHeader is the response header read for a load report; zero means
	// [DefaultLoadHeader]. A JSON body (Content-Type application/json) is read too.
	// "-" turns load reports off.
	LoadHeader string
	// Concurrency is how many backends are checked at once. Zero means 8.
	Concurrency int
}

func (c HealthCheck) withDefaults() HealthCheck {
	if c.Path == "" {
		c.Path = "/healthz"
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = min(time.Second, c.Interval)
	}
	if c.Rise == 0 {
		c.Rise = 2
	}
	if c.Fall == 0 {
		c.Fall = 3
	}
	if c.LoadHeader == "" {
		c.LoadHeader = DefaultLoadHeader
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	return c
}

// Validate reports every setting out of range.
func (c HealthCheck) Validate() error {
	var errs []error
	d := c.withDefaults()
	if !strings.HasPrefix(d.Path, "/") {
		errs = append(errs, fmt.Errorf("%w: health check path %q must start with /", ErrInvalidConfig, c.Path))
	}
	if d.Interval < 0 || d.Timeout < 0 || d.Timeout > d.Interval {
		errs = append(errs, fmt.Errorf("%w: health check interval %v and timeout %v: want 0 < timeout <= interval", ErrInvalidConfig, c.Interval, c.Timeout))
	}
	if d.Rise < 1 || d.Fall < 1 {
		errs = append(errs, fmt.Errorf("%w: health check rise %d and fall %d must be at least 1", ErrInvalidConfig, c.Rise, c.Fall))
	}
	if d.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("%w: health check concurrency %d must be at least 1", ErrInvalidConfig, c.Concurrency))
	}
	return errors.Join(errs...)
}

// HealthChecker runs active health checks over a pool's members. It starts no
// goroutine until [HealthChecker.Run] or [HealthChecker.Check], and those wait for
// every goroutine they start. It is safe for concurrent use, though one Run per
// checker is enough.
type HealthChecker struct {
	pool   *Pool
	cfg    HealthCheck
	client *http.Client

	checks, failures, badReports atomic.Uint64
}

// NewHealthChecker returns a checker of pool's members. client nil means a client
// with the check's timeout and http.DefaultTransport.
func NewHealthChecker(pool *Pool, cfg HealthCheck, client *http.Client) (*HealthChecker, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout}
	}
	return &HealthChecker{pool: pool, cfg: cfg, client: client}, nil
}

// Run checks every member at once and then each Interval on the pool's clock until ctx
// is done, and returns ctx's error.
func (h *HealthChecker) Run(ctx context.Context) error {
	h.Check(ctx)
	return metrics.Every(ctx, h.pool.clock, h.cfg.Interval, func() { h.Check(ctx) })
}

// HealthStats counts what a checker did.
type HealthStats struct {
	// Checks counts probes; Failures those that failed (no answer in time, or not 2xx).
	Checks, Failures uint64
	// BadReports counts load reports that did not parse; they are ignored.
	BadReports uint64
}

// Stats returns the checker's counts.
func (h *HealthChecker) Stats() HealthStats {
	return HealthStats{Checks: h.checks.Load(), Failures: h.failures.Load(), BadReports: h.badReports.Load()}
}

// Check checks every member once, concurrently up to Concurrency, applies the results
// and returns when all are done.
func (h *HealthChecker) Check(ctx context.Context) {
	members := h.pool.Backends()
	sem := make(chan struct{}, h.cfg.Concurrency)
	var wg sync.WaitGroup
	changed := atomic.Bool{}
	for _, b := range members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if h.checkOne(ctx, b) {
				changed.Store(true)
			}
		})
	}
	wg.Wait()
	if changed.Load() {
		h.pool.mu.Lock()
		h.pool.rebuildLocked(h.pool.clock.Now().UnixNano())
		h.pool.mu.Unlock()
	}
}

// checkOne probes b and reports whether its up/down state changed.
func (h *HealthChecker) checkOne(ctx context.Context, b *Backend) bool {
	h.checks.Add(1)
	ok := h.probe(ctx, b)
	if !ok {
		h.failures.Add(1)
	}
	down := b.activeDown.Load()
	if ok != down {
		// The result agrees with the state.
		b.hcCount.Store(0)
		return false
	}
	n := int(b.hcCount.Add(1))
	if (down && n >= h.cfg.Rise) || (!down && n >= h.cfg.Fall) {
		b.hcCount.Store(0)
		b.activeDown.Store(!down)
		if down && h.pool.slow.enabled() {
			b.since.Store(h.pool.clock.Now().UnixNano())
		}
		return true
	}
	return false
}

func (h *HealthChecker) probe(ctx context.Context, b *Backend) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	u := *b.url
	u.Path = strings.TrimSuffix(u.Path, "/") + h.cfg.Path
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	start := h.pool.clock.Now()
	res, err := h.client.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	ok := res.StatusCode >= 200 && res.StatusCode < 300
	if ok && h.cfg.LoadHeader != "-" {
		h.readLoad(b, res, body, start)
	}
	return ok
}

func (h *HealthChecker) readLoad(b *Backend, res *http.Response, body []byte, start time.Time) {
	var (
		r     LoadReport
		err   error
		found bool
	)
	if v := res.Header.Get(h.cfg.LoadHeader); v != "" {
		found = true
		r, err = ParseLoadReport(v)
	} else if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt == "application/json" && len(body) > 0 {
		found = true
		r, err = ParseLoadReportJSON(body)
	}
	if !found {
		return
	}
	if err != nil {
		h.badReports.Add(1)
		return
	}
	b.reportLoad(h.pool, r, h.pool.clock.Now().Sub(start))
}
