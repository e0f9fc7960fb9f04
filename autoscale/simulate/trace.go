package simulate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxTraceLen bounds a trace: at most this many timestamps, or seconds of counts, and
// at most this many requests in one second.
const MaxTraceLen = 50_000_000

// Trace is recorded traffic replayed by the simulator. It is made by [ReadTrace]: from
// arrival timestamps (replayed exactly) or from per-second counts (each second's count
// spread over the second, evenly with a random jitter). A Trace is a [Profile]: its rate
// is the count of each second. It is safe for concurrent use.
//
// A Trace's memory follows its data, not the time it spans: per-second counts are
// kept only for the seconds that have requests (a two-line trace whose seconds are 0
// and 49,999,999 holds two counts, not fifty million), and timestamps take 8 bytes
// each; [Trace.Rate] finds a second by binary search.
//
// [ReadTrace] detects the format from the first line that is not blank or a comment
// ([FormatAuto]); [ReadTraceFile] goes by the file's extension first ([FormatOfPath]).
// In every format, blank lines and lines starting with # are skipped, and an error
// names the line.
//
// # CSV format
//
// Comma-separated, one record per line; a first line whose first field is not a
// number is a header.
//
//   - One column: arrival timestamps in seconds, fractions allowed, non-decreasing:
//     either offsets or Unix times; the first timestamp's second is the trace's start.
//     Example: 1700000000.125
//   - Two columns: second,count: the requests that arrived during that second (an
//     integer offset or Unix second; the first line's second is the start; seconds
//     not listed have none; seconds must increase; a count is at most
//     [MaxTraceLen]). Example: 0,120
//
// # Access logs
//
// The Common and Combined Log Formats (Apache's and nginx's defaults), one request
// per line:
//
//	203.0.113.7 - acme [10/Oct/2000:13:55:36 -0700] "GET /api/cart?id=3 HTTP/1.1" 200 2326 "-" "curl/8.5" 0.042
//
// The bracketed time is the arrival (whole seconds, so each second's requests are
// spread over it as counts are); the user field, when not "-", is the tenant; the
// request's path without its query is the route ([Trace.Routes]); status must be a
// number. Fields after the bytes (Combined's quoted referer and user agent, and any
// of the operator's own) are skipped, except that the last unquoted one is read as
// the latency when it is one: a Go duration ("42ms"), a decimal with a point in
// seconds (nginx's $request_time, "0.042"), or an integer in microseconds (Apache's
// %D, "42000"), each optionally as key=value ("rt=0.042"); otherwise the line has no
// latency.
//
// # JSON lines
//
// One JSON object per line; unknown fields are ignored:
//
//	{"timestamp":"2026-03-10T09:00:00.125Z","tenant":"acme","route":"/api/cart","latency_ms":42}
//
// The fields read:
//
//   - The arrival, required: "timestamp", "time", "ts" or "@timestamp" (the first
//     present), an RFC 3339 string or a Unix time in seconds, fractions allowed (a
//     number of 10¹¹ or more is in milliseconds).
//   - The latency, optional: "latency_ms" or "duration_ms" in milliseconds, or
//     "duration", a Go duration string ("42ms") or a number of seconds; up to 24 h.
//   - "tenant" and "route" (or "path", whose query is dropped), optional strings.
//
// Timestamps that all fall on whole seconds make per-second counts; others are
// replayed exactly.
//
// Logs are written as requests end, so their lines may be a little out of order:
// a log's records are sorted by time, the earliest second being the start. A log
// whose lines name tenants (up to 1,000) replays as a [Mix] of them
// ([Trace.Tenants]); its recorded latencies become the service time
// ([Trace.ServiceTime]); [TraceScenario] uses both.
type Trace struct {
	times  []int64   // arrival offsets in ns, sorted; nil for counts
	secs   []int64   // the seconds (offsets from the start) that have requests, increasing
	counts []float64 // counts[i] is the number of requests in second secs[i], > 0
	length int64     // seconds covered: the last second listed, plus one

	// From logs only.
	tenants   Mix             // per-tenant sub-traces, when the log names tenants
	latencies []time.Duration // the latencies the log records, in arrival order
	routes    map[string]int  // requests per route
}

// ReadTraceFile reads a trace from a file in the format its extension names
// ([FormatOfPath]), or detected from its content; see [Trace] for the formats.
func ReadTraceFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("simulate: trace: %w", err)
	}
	defer f.Close()
	t, err := ReadTraceFormat(f, FormatOfPath(path))
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return t, nil
}

// ReadTrace reads a trace, detecting its format ([FormatAuto]); see [Trace] for the
// formats. It returns an error wrapping [ErrInvalidTrace] for a malformed one, naming
// the line.
func ReadTrace(r io.Reader) (*Trace, error) { return ReadTraceFormat(r, FormatAuto) }

// ReadTraceFormat reads a trace in format f; see [Trace] for the formats. It
// returns an error wrapping [ErrInvalidTrace] for a malformed one, naming the line.
func ReadTraceFormat(r io.Reader, f TraceFormat) (*Trace, error) {
	if f == FormatAuto {
		br := bufio.NewReaderSize(r, 64<<10)
		r, f = br, detectFormat(br)
	}
	switch f {
	case FormatCSV:
		return readCSV(r)
	case FormatAccessLog:
		return readLog(r, parseAccessLog)
	case FormatJSONLines:
		return readLog(r, parseJSONLine)
	}
	return nil, fmt.Errorf("%w: unknown format %v", ErrInvalidTrace, f)
}

// readCSV reads a CSV trace.
func readCSV(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		tr      Trace
		cols    int
		line    int
		first   = true
		start   float64
		last    = math.Inf(-1)
		records int
	)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrInvalidTrace, line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		fields := strings.Split(s, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			if first && records == 0 && cols == 0 {
				first = false
				continue // a header
			}
			return nil, bad("%q is not a number", fields[0])
		}
		first = false
		if cols == 0 {
			cols = len(fields)
			if cols > 2 {
				return nil, bad("%d columns, want 1 (timestamps) or 2 (second,count)", cols)
			}
		} else if len(fields) != cols {
			return nil, bad("%d columns, the trace has %d", len(fields), cols)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, bad("%v is not finite", v)
		}
		records++
		if records > MaxTraceLen {
			return nil, bad("more than %d records", MaxTraceLen)
		}
		if records == 1 {
			start = math.Floor(v)
		}
		off := v - start
		switch cols {
		case 1:
			if v < last {
				return nil, bad("timestamp %v before %v", v, last)
			}
			if off > float64(MaxTraceLen) {
				return nil, bad("timestamp %v more than %d s after the start", v, MaxTraceLen)
			}
			tr.times = append(tr.times, int64(math.Round(off*float64(time.Second))))
		case 2:
			if v != math.Trunc(v) || v <= last {
				return nil, bad("second %v is not an integer after %v", v, last)
			}
			if off >= float64(MaxTraceLen) {
				return nil, bad("second %v more than %d s after the start", v, MaxTraceLen)
			}
			c, err := strconv.ParseFloat(fields[1], 64)
			if err != nil || c < 0 || math.IsInf(c, 0) || c != math.Trunc(c) {
				return nil, bad("count %q is not an integer >= 0", fields[1])
			}
			if c > MaxTraceLen {
				return nil, bad("count %v is more than %d", c, MaxTraceLen)
			}
			sec := int64(off)
			if c > 0 {
				tr.secs = append(tr.secs, sec)
				tr.counts = append(tr.counts, c)
			}
			tr.length = sec + 1
		}
		last = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %w", ErrInvalidTrace, line+1, err)
	}
	if records == 0 {
		return nil, fmt.Errorf("%w: no records", ErrInvalidTrace)
	}
	if cols == 1 {
		for _, t := range tr.times {
			sec := t / int64(time.Second)
			if n := len(tr.secs); n > 0 && tr.secs[n-1] == sec {
				tr.counts[n-1]++
				continue
			}
			tr.secs = append(tr.secs, sec)
			tr.counts = append(tr.counts, 1)
		}
		tr.length = tr.times[len(tr.times)-1]/int64(time.Second) + 1
	}
	return &tr, nil
}

// Rate returns the number of requests in the trace's second holding t.
func (tr *Trace) Rate(t time.Duration) float64 {
	if t < 0 {
		return 0
	}
	s := int64(t / time.Second)
	i, ok := slices.BinarySearch(tr.secs, s)
	if !ok {
		return 0
	}
	return tr.counts[i]
}

// Tenants returns the per-tenant traces of a log that names tenants, as a [Mix] of
// the same length (requests without one under the tenant "-"), or nil.
func (tr *Trace) Tenants() Mix { return slices.Clone(tr.tenants) }

// ServiceTime returns the latencies a log records as an [Empirical] distribution, and
// false when it records none. A recorded latency includes any queueing the request
// met, so it overstates the service time of a loaded service.
func (tr *Trace) ServiceTime() (Empirical, bool) {
	if len(tr.latencies) == 0 {
		return Empirical{}, false
	}
	d, err := NewEmpirical(tr.latencies)
	return d, err == nil
}

// Routes returns the requests per route (the request path without its query) that a
// log records, or nil; past 10,000 distinct routes the rest count under "". The
// simulated service has one route, so they are reported, not replayed apart.
func (tr *Trace) Routes() map[string]int {
	if tr.routes == nil {
		return nil
	}
	out := make(map[string]int, len(tr.routes))
	for k, v := range tr.routes {
		out[k] = v
	}
	return out
}

// Length returns the time the trace covers, in whole seconds.
func (tr *Trace) Length() time.Duration { return time.Duration(tr.length) * time.Second }

// Requests returns the number of requests in the trace.
func (tr *Trace) Requests() int {
	if tr.times != nil {
		return len(tr.times)
	}
	var n float64
	for _, c := range tr.counts {
		n += c
	}
	return int(n)
}

// WriteCounts writes the trace as per-second counts, with a header: the seconds
// that have requests, and the first and last seconds even when they have none, so that
// [ReadTrace] reads back a trace of the same length and rates.
func (tr *Trace) WriteCounts(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "second,count")
	if len(tr.secs) == 0 || tr.secs[0] != 0 { // the first second sets the start
		fmt.Fprintln(bw, "0,0")
	}
	for i, c := range tr.counts {
		fmt.Fprintf(bw, "%d,%d\n", tr.secs[i], int64(c))
	}
	if last := tr.length - 1; last > 0 && (len(tr.secs) == 0 || tr.secs[len(tr.secs)-1] != last) {
		fmt.Fprintf(bw, "%d,0\n", last)
	}
	return bw.Flush()
}

func (tr *Trace) arrivals(rng *rand.Rand, end time.Duration) arrivals {
	if tr.times != nil {
		i := sort.Search(len(tr.times), func(i int) bool { return tr.times[i] >= int64(end) })
		return &timestamps{times: tr.times[:i]}
	}
	return &spread{secs: tr.secs, counts: tr.counts, rng: rng, end: int64(end)}
}

type timestamps struct {
	times []int64
	i     int
}

func (g *timestamps) next() (int64, bool) {
	if g.i >= len(g.times) {
		return 0, false
	}
	g.i++
	return g.times[g.i-1], true
}

// spread places a second's n arrivals at (k + u_k)/n of the second, u_k uniform. It
// walks the seconds that have requests, skipping those that have none.
type spread struct {
	secs    []int64
	counts  []float64
	rng     *rand.Rand
	end     int64
	i       int // index into secs and counts
	k, n    int
	started bool
}

func (g *spread) next() (int64, bool) {
	for g.k >= g.n {
		if g.started {
			g.i++
		}
		g.started = true
		if g.i >= len(g.secs) || g.secs[g.i]*int64(time.Second) >= g.end {
			return 0, false
		}
		g.k, g.n = 0, int(g.counts[g.i])
	}
	off := (float64(g.k) + g.rng.Float64()) / float64(g.n)
	g.k++
	t := g.secs[g.i]*int64(time.Second) + int64(off*float64(time.Second))
	if t >= g.end {
		return 0, false
	}
	return t, true
}

// ErrInvalidTrace is returned (wrapped) by [ReadTrace] for a malformed trace.
var ErrInvalidTrace = errors.New("simulate: invalid trace")
