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
// # CSV format
//
// Comma-separated, one record per line; blank lines and lines starting with # are
// skipped; a first line whose first field is not a number is a header.
//
//   - One column: arrival timestamps in seconds, fractions allowed, non-decreasing:
//     either offsets or Unix times; the first timestamp's second is the trace's start.
//     Example: 1700000000.125
//   - Two columns: second,count: the requests that arrived during that second (an
//     integer offset or Unix second; the first line's second is the start; seconds
//     not listed have none; seconds must increase; a count is at most
//     [MaxTraceLen]). Example: 0,120
type Trace struct {
	times  []int64   // arrival offsets in ns, sorted; nil for counts
	secs   []int64   // the seconds (offsets from the start) that have requests, increasing
	counts []float64 // counts[i] is the number of requests in second secs[i], > 0
	length int64     // seconds covered: the last second listed, plus one
}

// ReadTraceFile reads a trace from a CSV file; see [Trace] for the format.
func ReadTraceFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("simulate: trace: %w", err)
	}
	defer f.Close()
	t, err := ReadTrace(f)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return t, nil
}

// ReadTrace reads a trace in CSV; see [Trace] for the format. It returns an error
// wrapping [ErrInvalidTrace] for a malformed one, naming the line.
func ReadTrace(r io.Reader) (*Trace, error) {
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
