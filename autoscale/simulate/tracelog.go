package simulate

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TraceFormat is the format of a trace file; see [Trace] for each.
type TraceFormat int

// The trace formats.
const (
	// FormatAuto detects the format from the first line that is not blank or a
	// comment: a line starting with "{" is JSON lines; a line with a bracketed
	// timestamp in the Common Log Format's layout ("[10/Oct/2000:13:55:36 -0700]")
	// is an access log; anything else is CSV.
	FormatAuto TraceFormat = iota
	// FormatCSV is timestamps or second,count lines.
	FormatCSV
	// FormatAccessLog is the Common or Combined Log Format.
	FormatAccessLog
	// FormatJSONLines is one JSON object per line.
	FormatJSONLines
)

// String returns the format's name.
func (f TraceFormat) String() string {
	switch f {
	case FormatAuto:
		return "auto"
	case FormatCSV:
		return "csv"
	case FormatAccessLog:
		return "access log"
	case FormatJSONLines:
		return "JSON lines"
	}
	return "TraceFormat(" + strconv.Itoa(int(f)) + ")"
}

// FormatOfPath returns the format a file's extension names: .csv is CSV; .jsonl,
// .ndjson and .json JSON lines; anything else, .log included (access logs and JSON
// logs both go by it), [FormatAuto].
func FormatOfPath(path string) TraceFormat {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return FormatAuto
	}
	switch strings.ToLower(path[i:]) {
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson", ".json":
		return FormatJSONLines
	}
	return FormatAuto
}

// detectFormat reads the first line of data that br holds (up to its buffer) and
// names its format.
func detectFormat(br *bufio.Reader) TraceFormat {
	peek, _ := br.Peek(br.Size())
	for len(peek) > 0 {
		line := peek
		if i := bytes.IndexByte(peek, '\n'); i >= 0 {
			line, peek = peek[:i], peek[i+1:]
		} else {
			peek = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		switch {
		case line[0] == '{':
			return FormatJSONLines
		case looksLikeAccessLog(line):
			return FormatAccessLog
		}
		return FormatCSV
	}
	return FormatCSV
}

// looksLikeAccessLog reports whether line has a bracketed timestamp that starts like
// the Common Log Format's, "[dd/Mon/yyyy:".
func looksLikeAccessLog(line []byte) bool {
	i := bytes.IndexByte(line, '[')
	if i < 0 || len(line) < i+13 {
		return false
	}
	p := line[i+1 : i+13]
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	letter := func(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
	return digit(p[0]) && digit(p[1]) && p[2] == '/' && letter(p[3]) && letter(p[4]) && letter(p[5]) &&
		p[6] == '/' && digit(p[7]) && digit(p[8]) && digit(p[9]) && digit(p[10]) && p[11] == ':'
}

// logRecord is one request read from an access log or JSON lines.
type logRecord struct {
	t       int64 // Unix time in ns
	tenant  int32 // index into the builder's tenants
	latency time.Duration
}

// logBuilder gathers a log's records and makes the trace from them.
type logBuilder struct {
	recs     []logRecord
	tenants  []string
	tenantOf map[string]int32
	routes   map[string]int
	whole    bool // every timestamp is on a whole second
}

// maxRoutes bounds the distinct routes a trace counts; the rest count under "".
const maxRoutes = 10_000

func newLogBuilder() *logBuilder {
	return &logBuilder{tenantOf: map[string]int32{}, routes: map[string]int{}, whole: true}
}

func (b *logBuilder) add(t int64, tenant, route string, latency time.Duration) error {
	if len(b.recs) >= MaxTraceLen {
		return fmt.Errorf("more than %d records", MaxTraceLen)
	}
	ti, ok := b.tenantOf[tenant]
	if !ok {
		if len(b.tenants) >= maxTenants {
			return fmt.Errorf("more than %d tenants", maxTenants)
		}
		ti = int32(len(b.tenants))
		b.tenants = append(b.tenants, tenant)
		b.tenantOf[tenant] = ti
	}
	if _, ok := b.routes[route]; !ok && len(b.routes) >= maxRoutes {
		route = ""
	}
	b.routes[route]++
	b.whole = b.whole && t%int64(time.Second) == 0
	b.recs = append(b.recs, logRecord{t: t, tenant: ti, latency: latency})
	return nil
}

// maxTenants bounds the tenants of a log trace: each becomes a stream of the
// replay's [Mix].
const maxTenants = 1_000

// build sorts the records (a log is written as requests end, a little out of
// order) and makes the trace: exact timestamps, or per-second counts when every
// timestamp is on a whole second (as the Common Log Format's are), so that a
// second's requests are spread over it rather than replayed at its start.
func (b *logBuilder) build() (*Trace, error) {
	if len(b.recs) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrInvalidTrace)
	}
	slices.SortStableFunc(b.recs, func(x, y logRecord) int { return cmp.Compare(x.t, y.t) })
	first, last := floorDiv(b.recs[0].t, int64(time.Second)), floorDiv(b.recs[len(b.recs)-1].t, int64(time.Second))
	if last-first >= MaxTraceLen {
		return nil, fmt.Errorf("%w: the records span more than %d s", ErrInvalidTrace, MaxTraceLen)
	}
	start := first * int64(time.Second)
	tr := b.trace(start, -1)
	tr.routes = b.routes
	for _, r := range b.recs {
		if r.latency >= 0 {
			tr.latencies = append(tr.latencies, r.latency)
		}
	}
	if len(b.tenants) > 1 || b.tenants[0] != "" {
		for i, name := range b.tenants {
			if name == "" {
				name = "-"
			}
			sub := b.trace(start, int32(i))
			sub.length = tr.length
			tr.tenants = append(tr.tenants, Tenant{Name: name, Profile: sub})
		}
	}
	return tr, nil
}

// trace makes the trace of tenant's records (all when tenant < 0), from start.
func (b *logBuilder) trace(start int64, tenant int32) *Trace {
	var tr Trace
	for _, r := range b.recs {
		if tenant >= 0 && r.tenant != tenant {
			continue
		}
		off := r.t - start
		if !b.whole {
			tr.times = append(tr.times, off)
		}
		sec := off / int64(time.Second)
		if n := len(tr.secs); n > 0 && tr.secs[n-1] == sec {
			tr.counts[n-1]++
		} else {
			tr.secs = append(tr.secs, sec)
			tr.counts = append(tr.counts, 1)
		}
		tr.length = sec + 1
	}
	return &tr
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// readLog reads an access log or JSON lines with parse, one record a line.
func readLog(r io.Reader, parse func(b *logBuilder, line string) error) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	b := newLogBuilder()
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		if err := parse(b, s); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrInvalidTrace, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %w", ErrInvalidTrace, line+1, err)
	}
	return b.build()
}

// clfTime is the Common Log Format's timestamp layout.
const clfTime = "02/Jan/2006:15:04:05 -0700"

// parseAccessLog reads one line of the Common or Combined Log Format:
//
//	host ident user [10/Oct/2000:13:55:36 -0700] "GET /path?q HTTP/1.1" status bytes ["referer" "agent"] [latency]
func parseAccessLog(b *logBuilder, s string) error {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		return fmt.Errorf("no [timestamp] in %q", clip(s))
	}
	head := strings.Fields(s[:open])
	if len(head) != 3 {
		return fmt.Errorf("want host, ident and user before the timestamp, got %d fields", len(head))
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return fmt.Errorf("unclosed [timestamp]")
	}
	ts, err := time.Parse(clfTime, s[open+1:open+end])
	if err != nil {
		return fmt.Errorf("timestamp %q: want the layout %s", s[open+1:open+end], clfTime)
	}
	if sec := ts.Unix(); sec <= minUnixSec || sec >= maxUnixSec {
		return fmt.Errorf("timestamp %q out of range", s[open+1:open+end])
	}
	rest := strings.TrimLeft(s[open+end+1:], " ")
	request, rest, ok := quoted(rest)
	if !ok {
		return fmt.Errorf("no quoted request after the timestamp")
	}
	route := ""
	if f := strings.Fields(request); len(f) >= 2 {
		route, _, _ = strings.Cut(f[1], "?")
	}
	fields := strings.Fields(rest)
	if len(fields) < 2 {
		return fmt.Errorf("want status and bytes after the request")
	}
	if st, err := strconv.Atoi(fields[0]); err != nil || st < 100 || st > 999 {
		return fmt.Errorf("status %q is not a number in [100, 999]", fields[0])
	}
	// What follows status and bytes: a quoted referer and user agent (Combined),
	// then fields of the operator's own; the last unquoted one may be the latency.
	rest = strings.TrimLeft(rest, " ")
	for range 2 {
		_, rest, _ = cutField(rest)
	}
	var last string
	for rest != "" {
		if rest[0] == '"' {
			var ok bool
			if _, rest, ok = quoted(rest); !ok {
				return fmt.Errorf("unclosed quote after the request")
			}
			last = ""
		} else {
			last, rest, _ = cutField(rest)
		}
		rest = strings.TrimLeft(rest, " ")
	}
	latency := time.Duration(-1)
	if last != "" {
		if d, ok := logLatency(last); ok {
			latency = d
		}
	}
	tenant := head[2]
	if tenant == "-" {
		tenant = ""
	}
	return b.add(ts.UnixNano(), tenant, route, latency)
}

// logLatency reads an access log's trailing latency: a Go duration ("123ms"), a
// decimal with a point in seconds (nginx's $request_time, "0.123"), or an integer in
// microseconds (Apache's %D, "123000"), optionally as key=value ("rt=0.123").
func logLatency(f string) (time.Duration, bool) {
	if _, v, ok := strings.Cut(f, "="); ok {
		f = v
	}
	f = strings.Trim(f, `"`)
	if d, err := time.ParseDuration(f); err == nil && f != "0" {
		return d, d >= 0 && d <= 24*time.Hour
	}
	if i, err := strconv.ParseInt(f, 10, 64); err == nil {
		if i < 0 || i > int64(24*time.Hour/time.Microsecond) {
			return 0, false
		}
		return time.Duration(i) * time.Microsecond, true
	}
	if v, err := strconv.ParseFloat(f, 64); err == nil && v >= 0 && v <= 86400 {
		return time.Duration(v * float64(time.Second)), true
	}
	return 0, false
}

// quoted reads a double-quoted field at the start of s (backslash escapes the next
// byte) and returns its content and what follows it.
func quoted(s string) (content, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		return "", s, false
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[1:i], s[i+1:], true
		}
	}
	return "", s, false
}

// cutField cuts s at its first space.
func cutField(s string) (field, rest string, ok bool) {
	field, rest, ok = strings.Cut(s, " ")
	return field, strings.TrimLeft(rest, " "), ok
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// jsonLine is the fields a JSON line may carry; others are ignored.
type jsonLine struct {
	Timestamp   json.RawMessage `json:"timestamp"`
	Time        json.RawMessage `json:"time"`
	TS          json.RawMessage `json:"ts"`
	AtTimestamp json.RawMessage `json:"@timestamp"`
	LatencyMS   *float64        `json:"latency_ms"`
	DurationMS  *float64        `json:"duration_ms"`
	Duration    json.RawMessage `json:"duration"`
	Tenant      *string         `json:"tenant"`
	Route       *string         `json:"route"`
	Path        *string         `json:"path"`
}

// parseJSONLine reads one JSON object; see [Trace] for its fields.
func parseJSONLine(b *logBuilder, s string) error {
	var j jsonLine
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	raw := j.Timestamp
	for _, alt := range []json.RawMessage{j.Time, j.TS, j.AtTimestamp} {
		if raw == nil {
			raw = alt
		}
	}
	if raw == nil {
		return fmt.Errorf("no timestamp, time, ts or @timestamp field")
	}
	t, err := jsonTime(raw)
	if err != nil {
		return err
	}
	latency := time.Duration(-1)
	switch {
	case j.LatencyMS != nil:
		latency, err = msDuration(*j.LatencyMS, "latency_ms")
	case j.DurationMS != nil:
		latency, err = msDuration(*j.DurationMS, "duration_ms")
	case j.Duration != nil:
		latency, err = jsonDuration(j.Duration)
	}
	if err != nil {
		return err
	}
	var tenant, route string
	if j.Tenant != nil {
		tenant = *j.Tenant
	}
	switch {
	case j.Route != nil:
		route = *j.Route
	case j.Path != nil:
		route, _, _ = strings.Cut(*j.Path, "?")
	}
	return b.add(t, tenant, route, latency)
}

// Unix times in ns beyond which a timestamp is refused: years 1678 and 2262.
const minUnixSec, maxUnixSec = math.MinInt64 / int64(time.Second), math.MaxInt64 / int64(time.Second)

// jsonTime reads an RFC 3339 string or a Unix time in seconds (or, at 10¹¹ and above,
// in milliseconds), fractions allowed.
func jsonTime(raw json.RawMessage) (int64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("timestamp %q is not RFC 3339", clip(s))
		}
		if sec := t.Unix(); sec <= minUnixSec || sec >= maxUnixSec {
			return 0, fmt.Errorf("timestamp %q out of range", s)
		}
		return t.UnixNano(), nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("timestamp %s is neither a string nor a number", clip(string(raw)))
	}
	if math.Abs(v) >= 1e11 {
		v /= 1000 // milliseconds
	}
	if !(v > float64(minUnixSec) && v < float64(maxUnixSec)) {
		return 0, fmt.Errorf("timestamp %s out of range", clip(string(raw)))
	}
	sec := math.Floor(v)
	return int64(sec)*int64(time.Second) + int64(math.Round((v-sec)*1e9)), nil
}

func msDuration(ms float64, field string) (time.Duration, error) {
	if !(ms >= 0) || ms > float64(24*time.Hour/time.Millisecond) {
		return 0, fmt.Errorf("%s %v out of [0, 24 h]", field, ms)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// jsonDuration reads a duration: a Go duration string ("123ms") or seconds.
func jsonDuration(raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 24*time.Hour {
			return 0, fmt.Errorf("duration %q is not a duration in [0, 24 h]", clip(s))
		}
		return d, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || !(v >= 0) || v > 86400 {
		return 0, fmt.Errorf("duration %s is not seconds in [0, 86400]", clip(string(raw)))
	}
	return time.Duration(v * float64(time.Second)), nil
}
