package redisdefer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/middleware"
)

// DefaultPrefix starts the keys of a store whose Config names none.
const DefaultPrefix = "autoscale:defer"

// formatVersion is the version of the entries this package writes (field "v"); an
// entry of a newer version is refused, not misread.
const formatVersion = 1

// ErrInvalidConfig is returned (wrapped) by [New] for bad settings; it wraps
// middleware.ErrInvalidConfig.
var ErrInvalidConfig = fmt.Errorf("redisdefer: %w", middleware.ErrInvalidConfig)

// ErrNewerFormat is returned (wrapped) for an entry written by a newer version of
// this package.
var ErrNewerFormat = errors.New("redisdefer: entry of a newer format")

// Config holds a [Store]'s settings. The zero value is the defaults.
type Config struct {
	// Prefix starts every key the store writes; gateways sharing deferred work share
	// it. Default [DefaultPrefix].
	Prefix string
	// MaxRequests and MaxBytes bound what the store holds, as
	// [middleware.NewMemoryStore]'s do; zero means middleware.DefaultDeferMaxRequests
	// and middleware.DefaultDeferMaxBytes.
	MaxRequests int
	MaxBytes    int64
	// RunTimeout, above zero, is how long a claimed request may run without a result
	// before Sweep offers it again (at least once); zero never offers it again (at
	// most once). See the package documentation.
	RunTimeout time.Duration
}

// Store is a [middleware.DeferStore] on Redis. It is safe for concurrent use, by
// several gateways at once.
type Store struct {
	client redis.UniversalClient
	cfg    Config
	keys   []string // pending, running, expiry, meta
	entry  string   // the prefix of an entry's key
	again  atomic.Uint64
}

var _ middleware.DeferStore = (*Store)(nil)

// New returns a store on client with cfg's settings; every bad setting is reported,
// wrapped in [ErrInvalidConfig].
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	var errs []error
	if client == nil {
		errs = append(errs, fmt.Errorf("%w: nil redis client", ErrInvalidConfig))
	}
	if cfg.MaxRequests < 0 {
		errs = append(errs, fmt.Errorf("%w: max requests %d is negative", ErrInvalidConfig, cfg.MaxRequests))
	}
	if cfg.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: max bytes %d is negative", ErrInvalidConfig, cfg.MaxBytes))
	}
	if cfg.RunTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: run timeout %v is negative", ErrInvalidConfig, cfg.RunTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	cfg.MaxRequests = cmp.Or(cfg.MaxRequests, middleware.DefaultDeferMaxRequests)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, middleware.DefaultDeferMaxBytes)
	p := cfg.Prefix
	return &Store{client: client, cfg: cfg, entry: p + ":e:",
		keys: []string{p + ":pending", p + ":running", p + ":expiry", p + ":meta"}}, nil
}

// stored is a request as the store keeps it while it is pending: the request itself,
// with the format version.
type stored struct {
	V   int                        `json:"v"`
	Req middleware.DeferredRequest `json:"req"`
}

// storedResult is a result as the store keeps it.
type storedResult struct {
	V   int                       `json:"v"`
	Res middleware.DeferredResult `json:"res"`
}

// Put implements [middleware.DeferStore].
func (s *Store) Put(ctx context.Context, req middleware.DeferredRequest) error {
	if req.ID == "" {
		return errors.New("redisdefer: empty id")
	}
	blob, err := json.Marshal(stored{V: formatVersion, Req: req})
	if err != nil {
		return fmt.Errorf("redisdefer: encode: %w", err)
	}
	// What the entry counts once claimed: the request without its body and headers,
	// as the memory store counts it.
	kept := req
	kept.Body, kept.Header = nil, nil
	r, err := putScript.Run(ctx, s.client, s.entryKeys(req.ID),
		blob, req.Tenant, req.Size(), kept.Size(), s.cfg.MaxRequests, s.cfg.MaxBytes, formatVersion, req.ID).Int()
	if err != nil {
		return fmt.Errorf("redisdefer: put: %w", err)
	}
	switch r {
	case putOK:
		return nil
	case putFull:
		return middleware.ErrStoreFull
	case putDuplicate:
		return errors.New("redisdefer: duplicate id")
	}
	return fmt.Errorf("redisdefer: put: unexpected reply %d", r)
}

// Claim implements [middleware.DeferStore].
func (s *Store) Claim(ctx context.Context) (middleware.DeferredRequest, bool, error) {
	keep := 0
	if s.cfg.RunTimeout > 0 {
		keep = 1
	}
	v, err := claimScript.Run(ctx, s.client, s.keys, s.entry, formatVersion, keep).Result()
	if errors.Is(err, redis.Nil) {
		return middleware.DeferredRequest{}, false, nil
	}
	if err != nil {
		return middleware.DeferredRequest{}, false, wrapErr("claim", err)
	}
	blob, ok := v.(string)
	if !ok {
		return middleware.DeferredRequest{}, false, fmt.Errorf("redisdefer: claim: unexpected reply %T", v)
	}
	var st stored
	if err := json.Unmarshal([]byte(blob), &st); err != nil {
		return middleware.DeferredRequest{}, false, fmt.Errorf("redisdefer: claim: decode: %w", err)
	}
	if st.V > formatVersion {
		return middleware.DeferredRequest{}, false, fmt.Errorf("%w: version %d", ErrNewerFormat, st.V)
	}
	return st.Req, true, nil
}

// Complete implements [middleware.DeferStore].
func (s *Store) Complete(ctx context.Context, id string, res middleware.DeferredResult, expires time.Time) error {
	blob, err := json.Marshal(storedResult{V: formatVersion, Res: res})
	if err != nil {
		return fmt.Errorf("redisdefer: encode: %w", err)
	}
	n, err := completeScript.Run(ctx, s.client, s.entryKeys(id),
		blob, res.Size(), expires.UnixMilli(), id).Int()
	if err != nil {
		return wrapErr("complete", err)
	}
	if n == 0 {
		return errors.New("redisdefer: no running request with that id")
	}
	return nil
}

// Get implements [middleware.DeferStore].
func (s *Store) Get(ctx context.Context, id string) (middleware.DeferredEntry, bool, error) {
	vals, err := s.client.HMGet(ctx, s.entry+id, "state", "tenant", "res", "exp", "v").Result()
	if err != nil {
		return middleware.DeferredEntry{}, false, wrapErr("get", err)
	}
	if vals[0] == nil {
		return middleware.DeferredEntry{}, false, nil
	}
	if v, _ := strconv.Atoi(str(vals[4])); v > formatVersion {
		return middleware.DeferredEntry{}, false, fmt.Errorf("%w: version %d", ErrNewerFormat, v)
	}
	state, err := strconv.Atoi(str(vals[0]))
	if err != nil || state < int(middleware.DeferredPending) || state > int(middleware.DeferredDone) {
		return middleware.DeferredEntry{}, false, fmt.Errorf("redisdefer: get: bad state %q", str(vals[0]))
	}
	e := middleware.DeferredEntry{State: middleware.DeferredState(state), Tenant: str(vals[1])}
	if e.State == middleware.DeferredDone {
		var sr storedResult
		if err := json.Unmarshal([]byte(str(vals[2])), &sr); err != nil {
			return middleware.DeferredEntry{}, false, fmt.Errorf("redisdefer: get: decode: %w", err)
		}
		ms, err := strconv.ParseInt(str(vals[3]), 10, 64)
		if err != nil {
			return middleware.DeferredEntry{}, false, fmt.Errorf("redisdefer: get: bad expiry %q", str(vals[3]))
		}
		e.Result, e.Expires = sr.Res, time.UnixMilli(ms)
	}
	return e, true, nil
}

// sweepBatch bounds the entries one script call removes, so that a sweep after a
// long outage does not hold Redis for long.
const sweepBatch = 500

// Sweep implements [middleware.DeferStore]: it removes the results that expired at
// or before now and returns how many; with a RunTimeout, it also offers again the
// requests claimed longer ago than that (counted in [Stats.OfferedAgain]).
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		r, err := sweepScript.Run(ctx, s.client, s.keys, s.entry, now.UnixMilli(), s.cfg.RunTimeout.Milliseconds(), sweepBatch).Int64Slice()
		if err != nil {
			return total, wrapErr("sweep", err)
		}
		if len(r) != 2 {
			return total, fmt.Errorf("redisdefer: sweep: unexpected reply %v", r)
		}
		total += int(r[0])
		s.again.Add(uint64(r[1]))
		if r[0]+r[1] < sweepBatch {
			return total, nil
		}
	}
}

// Stats counts what a store did beyond the interface.
type Stats struct {
	// OfferedAgain counts the requests Sweep offered again after RunTimeout.
	OfferedAgain uint64
}

// Stats returns the store's counts (this process's calls).
func (s *Store) Stats() Stats { return Stats{OfferedAgain: s.again.Load()} }

func (s *Store) entryKeys(id string) []string {
	return []string{s.keys[0], s.keys[1], s.keys[2], s.keys[3], s.entry + id}
}

// Len returns the requests and results held, and their bytes.
func (s *Store) Len(ctx context.Context) (n int, bytes int64, err error) {
	vals, err := s.client.HMGet(ctx, s.keys[3], "count", "bytes").Result()
	if err != nil {
		return 0, 0, wrapErr("len", err)
	}
	n, _ = strconv.Atoi(str(vals[0]))
	bytes, _ = strconv.ParseInt(str(vals[1]), 10, 64)
	return n, bytes, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func wrapErr(op string, err error) error {
	if strings.HasPrefix(err.Error(), "NEWERFORMAT") {
		return fmt.Errorf("redisdefer: %s: %w: %w", op, ErrNewerFormat, err)
	}
	return fmt.Errorf("redisdefer: %s: %w", op, err)
}
