package loadreport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Defaults of a [Scraper].
const (
	DefaultPath        = "/metrics"
	DefaultInterval    = time.Second
	DefaultTimeout     = 500 * time.Millisecond
	DefaultMaxBody     = 4 << 20
	DefaultConcurrency = 8
	// DefaultMaxAgeIntervals is the default staleness limit in intervals: a report
	// older than three intervals has missed at least two scrapes.
	DefaultMaxAgeIntervals = 3
)

// More errors a scrape fails with, wrapped.
var (
	// ErrTooLarge means the page is larger than the scraper's maximum body.
	ErrTooLarge = errors.New("loadreport: metrics page too large")
	// ErrStatus means the backend answered with a status other than 2xx (404: no
	// metrics page at that path).
	ErrStatus = errors.New("loadreport: metrics page status")
)

// Option configures a [Scraper].
type Option func(*Scraper) error

// WithMapping sets how a page becomes a report. The default is [VLLM].
func WithMapping(m Mapping) Option {
	return func(s *Scraper) error {
		if err := m.Validate(); err != nil {
			return err
		}
		s.mapping = m
		return nil
	}
}

// WithPath sets the path scraped on each backend's URL. The default is
// [DefaultPath]; it must start with "/".
func WithPath(p string) Option {
	return func(s *Scraper) error {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%w: path %q must start with /", ErrInvalidConfig, p)
		}
		s.path = p
		return nil
	}
}

// WithInterval sets the period of the scrapes. The default is [DefaultInterval]; it
// must be positive.
func WithInterval(d time.Duration) Option {
	return func(s *Scraper) error {
		if d <= 0 {
			return fmt.Errorf("%w: interval %v is not positive", ErrInvalidConfig, d)
		}
		s.interval = d
		return nil
	}
}

// WithTimeout bounds one scrape, from the request to the last byte of the page. The
// default is [DefaultTimeout], or the interval if shorter; it must be positive and at
// most the interval.
func WithTimeout(d time.Duration) Option {
	return func(s *Scraper) error {
		if d <= 0 {
			return fmt.Errorf("%w: timeout %v is not positive", ErrInvalidConfig, d)
		}
		s.timeout = d
		return nil
	}
}

// WithMaxBody bounds a page, in bytes after decompression; a larger page is
// [ErrTooLarge], counted and not parsed. The default is [DefaultMaxBody] (4 MiB); it
// must be positive.
func WithMaxBody(n int64) Option {
	return func(s *Scraper) error {
		if n <= 0 {
			return fmt.Errorf("%w: max body %d is not positive", ErrInvalidConfig, n)
		}
		s.maxBody = n
		return nil
	}
}

// WithConcurrency sets how many backends are scraped at once. The default is
// [DefaultConcurrency]; it must be at least 1.
func WithConcurrency(n int) Option {
	return func(s *Scraper) error {
		if n < 1 {
			return fmt.Errorf("%w: concurrency %d must be at least 1", ErrInvalidConfig, n)
		}
		s.concurrency = n
		return nil
	}
}

// WithMaxAge sets the age past which a report is stale (see [Fresh] and
// [Scraper.Load]). The default is [DefaultMaxAgeIntervals] intervals; it must be
// positive.
func WithMaxAge(d time.Duration) Option {
	return func(s *Scraper) error {
		if d <= 0 {
			return fmt.Errorf("%w: max age %v is not positive", ErrInvalidConfig, d)
		}
		s.maxAge = d
		return nil
	}
}

// WithClient sets the HTTP client. The default is a client on
// [net/http.DefaultTransport]; the scraper's timeout applies through the request's
// context either way.
func WithClient(c *http.Client) Option {
	return func(s *Scraper) error {
		if c == nil {
			return fmt.Errorf("%w: nil client", ErrInvalidConfig)
		}
		s.client = c
		return nil
	}
}

// WithFilter scrapes only the backends for which keep returns true (in a pool that
// mixes vLLM and SGLang servers, one scraper per kind, filtered by a label). The
// default scrapes every member.
func WithFilter(keep func(*balancer.Backend) bool) Option {
	return func(s *Scraper) error {
		if keep == nil {
			return fmt.Errorf("%w: nil filter", ErrInvalidConfig)
		}
		s.keep = keep
		return nil
	}
}

// Scraper reads each backend's metrics page on an interval and hands what it maps to
// [balancer.Pool.ReportLoad], off the request path. It starts no goroutine until
// [Scraper.Run] or [Scraper.Scrape], and those wait for every goroutine they start.
// It is safe for concurrent use; rounds of Scrape are serialized.
type Scraper struct {
	pool        *balancer.Pool
	clock       metrics.Clock
	mapping     Mapping
	path        string
	interval    time.Duration
	timeout     time.Duration
	maxAge      time.Duration
	maxBody     int64
	concurrency int
	client      *http.Client
	keep        func(*balancer.Backend) bool

	round sync.Mutex             // serializes Scrape
	prev  map[string]*lastValues // by backend id; under round

	scrapes, reports                                                           atomic.Uint64
	timeouts, status, tooLarge, malformed, invalid, missing, unreachable, gone atomic.Uint64
}

// lastValues is a backend's previous page, for Rate rules.
type lastValues struct {
	vals []value
	at   time.Time
}

// New returns a scraper of pool's members. It reports every bad option at once, each
// wrapping [ErrInvalidConfig].
func New(pool *balancer.Pool, opts ...Option) (*Scraper, error) {
	s := &Scraper{
		mapping: VLLM(), path: DefaultPath, interval: DefaultInterval, maxBody: DefaultMaxBody,
		concurrency: DefaultConcurrency, client: &http.Client{}, prev: map[string]*lastValues{},
		keep: func(*balancer.Backend) bool { return true },
	}
	var errs []error
	if pool == nil {
		errs = append(errs, fmt.Errorf("%w: nil pool", ErrInvalidConfig))
	} else {
		s.pool, s.clock = pool, pool.Clock()
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s.timeout == 0 {
		s.timeout = min(DefaultTimeout, s.interval)
	} else if s.timeout > s.interval {
		errs = append(errs, fmt.Errorf("%w: timeout %v is longer than the interval %v", ErrInvalidConfig, s.timeout, s.interval))
	}
	if s.maxAge == 0 {
		s.maxAge = DefaultMaxAgeIntervals * s.interval
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// MaxAge returns the age past which the scraper's reports are stale.
func (s *Scraper) MaxAge() time.Duration { return s.maxAge }

// Interval returns the period of the scrapes.
func (s *Scraper) Interval() time.Duration { return s.interval }

// Fresh reports whether r is a report younger than maxAge at now: not nil, and its At
// (stamped by [balancer.Pool.ReportLoad] when the report was read, and the only age
// source: a backend's [balancer.Backend.Load]) no more than maxAge before now. A
// backend whose scrapes fail keeps its last good report, which ages until it is stale.
func Fresh(r *balancer.LoadReport, now time.Time, maxAge time.Duration) bool {
	return r != nil && !r.At.IsZero() && now.Sub(r.At) <= maxAge
}

// Load returns b's latest load report and whether it is fresh by the scraper's
// maximum age at the pool's clock.
func (s *Scraper) Load(b *balancer.Backend) (*balancer.LoadReport, bool) {
	r := b.Load()
	return r, Fresh(r, s.clock.Now(), s.maxAge)
}

// Run scrapes every member at once and then each interval on the pool's clock until
// ctx is done, and returns ctx's error. Failures are counted ([Scraper.Stats]), not
// returned; a round that overruns the interval delays the next.
func (s *Scraper) Run(ctx context.Context) error {
	_ = s.Scrape(ctx)
	return metrics.Every(ctx, s.clock, s.interval, func() { _ = s.Scrape(ctx) })
}

// Stats counts what a scraper did.
type Stats struct {
	// Scrapes counts pages asked for; Reports the reports handed to the pool.
	Scrapes, Reports uint64
	// The failures, by reason: no page within the timeout, a status other than 2xx,
	// a page past the maximum body, a page that does not parse, a value NaN,
	// negative or past its bound (ErrInvalidValue), a page without any mapped
	// metric, no connection, and a backend that left the pool during its scrape.
	Timeouts, Status, TooLarge, Malformed, Invalid, Missing, Unreachable, Gone uint64
}

// Stats returns the scraper's counts.
func (s *Scraper) Stats() Stats {
	return Stats{
		Scrapes: s.scrapes.Load(), Reports: s.reports.Load(),
		Timeouts: s.timeouts.Load(), Status: s.status.Load(), TooLarge: s.tooLarge.Load(),
		Malformed: s.malformed.Load(), Invalid: s.invalid.Load(), Missing: s.missing.Load(),
		Unreachable: s.unreachable.Load(), Gone: s.gone.Load(),
	}
}

// Scrape scrapes every member once, concurrently up to the scraper's concurrency,
// reports what it read to the pool and returns when all are done: the errors of the
// backends that failed, joined, each prefixed with the backend's id. A backend that
// fails keeps its last good report.
func (s *Scraper) Scrape(ctx context.Context) error {
	s.round.Lock()
	defer s.round.Unlock()
	members := s.pool.Backends()
	errs := make([]error, len(members))
	lasts := make([]*lastValues, len(members))
	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for i, b := range members {
		if !s.keep(b) {
			continue
		}
		prev := s.prev[b.ID()]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			last, err := s.scrapeOne(ctx, b, prev)
			if err != nil {
				errs[i] = fmt.Errorf("backend %q: %w", b.ID(), err)
			}
			lasts[i] = last
		})
	}
	wg.Wait()
	// Keep the pages of this round's successes; a failure forgets the backend's
	// previous page, so a rate never spans a gap of failed scrapes.
	clear(s.prev)
	for i, last := range lasts {
		if last != nil {
			s.prev[members[i].ID()] = last
		}
	}
	return errors.Join(errs...)
}

// scrapeOne reads b's page and reports it; it returns the page's values for the next
// Rate rules (nil when it has none) and the error counted.
func (s *Scraper) scrapeOne(ctx context.Context, b *balancer.Backend, prev *lastValues) (*lastValues, error) {
	s.scrapes.Add(1)
	start := s.clock.Now()
	page, err := s.fetch(ctx, b)
	if err != nil {
		s.countFetch(ctx, err)
		return nil, err
	}
	vals, err := s.mapping.values(page)
	if err != nil {
		s.countMap(err)
		return nil, err
	}
	now := s.clock.Now()
	var pv []value
	var dt float64
	if prev != nil {
		pv, dt = prev.vals, now.Sub(prev.at).Seconds()
	}
	r, err := s.mapping.report(vals, pv, dt)
	if err != nil {
		s.countMap(err)
		return nil, err
	}
	if err := s.pool.ReportLoad(b.ID(), r, now.Sub(start)); err != nil {
		if errors.Is(err, balancer.ErrUnknownBackend) {
			s.gone.Add(1)
		} else {
			s.invalid.Add(1)
		}
		return nil, err
	}
	s.reports.Add(1)
	return &lastValues{vals: vals, at: now}, nil
}

func (s *Scraper) countMap(err error) {
	switch {
	case errors.Is(err, ErrParse):
		s.malformed.Add(1)
	case errors.Is(err, ErrNoMetrics):
		s.missing.Add(1)
	default:
		s.invalid.Add(1)
	}
}

func (s *Scraper) countFetch(ctx context.Context, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrTooLarge):
		s.tooLarge.Add(1)
	case errors.Is(err, ErrStatus):
		s.status.Add(1)
	case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		s.timeouts.Add(1)
	default:
		s.unreachable.Add(1)
	}
}

// fetch GETs b's page within the timeout and returns its body.
func (s *Scraper) fetch(ctx context.Context, b *balancer.Backend) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	u := *b.URL()
	u.Path = strings.TrimSuffix(u.Path, "/") + s.path
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	// The text format only: a server that can send protobuf or OpenMetrics sends
	// this one when asked for it first.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	res, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10)) // lets the connection be reused
		return nil, fmt.Errorf("%w %d", ErrStatus, res.StatusCode)
	}
	if res.ContentLength > s.maxBody {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, res.ContentLength, s.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, s.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > s.maxBody {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.maxBody)
	}
	return body, nil
}
