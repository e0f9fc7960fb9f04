package simulate_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestSampleLogs reads the committed sample logs, each in the format detected from
// its content and from its extension alike, and replays them: the requests, span,
// tenants, latencies and routes are those of the files (counted independently
// when the files were written), and the replay sends every request.
func TestSampleLogs(t *testing.T) {
	tests := []struct {
		file              string
		format            simulate.TraceFormat
		requests, tenants int
		length            time.Duration
		latencies         int
		meanLatency       time.Duration
		route             string
		routeCount        int
	}{
		{"access-combined.log", simulate.FormatAuto, 40, 4, 25 * time.Second, 40, 73550 * time.Microsecond, "/api/cart", 14},
		{"access-common.log", simulate.FormatAuto, 30, 0, 38 * time.Second, 0, 0, "/api/search", 5},
		{"requests.jsonl", simulate.FormatJSONLines, 40, 2, 5 * time.Second, 30, 155747 * time.Microsecond, "/api/cart", 14},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			if got := simulate.FormatOfPath(path); got != tt.format {
				t.Errorf("FormatOfPath = %v, want %v", got, tt.format)
			}
			byExt, err := simulate.ReadTraceFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data := mustRead(t, path)
			tr, err := simulate.ReadTrace(bytes.NewReader(data)) // detected
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []*simulate.Trace{byExt, tr} {
				if x.Requests() != tt.requests || x.Length() != tt.length {
					t.Errorf("%d requests over %v, want %d over %v", x.Requests(), x.Length(), tt.requests, tt.length)
				}
			}
			mix := tr.Tenants()
			if len(mix) != tt.tenants {
				t.Errorf("%d tenants, want %d", len(mix), tt.tenants)
			}
			sum := 0
			for _, ten := range mix {
				sum += ten.Profile.(*simulate.Trace).Requests()
			}
			if mix != nil && sum != tt.requests {
				t.Errorf("the tenants' traces hold %d requests, want %d", sum, tt.requests)
			}
			d, ok := tr.ServiceTime()
			if ok != (tt.latencies > 0) || d.Len() != tt.latencies {
				t.Errorf("%d latencies (%v), want %d", d.Len(), ok, tt.latencies)
			}
			if ok && (d.Mean()-tt.meanLatency).Abs() > time.Microsecond {
				t.Errorf("mean latency %v, want %v", d.Mean(), tt.meanLatency)
			}
			if got := tr.Routes()[tt.route]; got != tt.routeCount {
				t.Errorf("route %s: %d requests, want %d (routes %v)", tt.route, got, tt.routeCount, tr.Routes())
			}
			checkRoundTrip(t, tr)
			sc := simulate.TraceScenario("log", tr)
			res := run(t, sc, mustShipped(t, "kpa_go"), 1)
			if res.Summary.Requests != uint64(tt.requests) {
				t.Errorf("replayed %d requests, want %d", res.Summary.Requests, tt.requests)
			}
			if len(res.Summary.Tenants) != tt.tenants {
				t.Errorf("the replay has %d tenants, want %d", len(res.Summary.Tenants), tt.tenants)
			}
		})
	}
}

// TestReadAccessLog checks what an access log line may carry and that a bad line is
// refused with its number.
func TestReadAccessLog(t *testing.T) {
	const (
		a = `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 5`
		b = `1.2.3.4 - bob [10/Oct/2000:13:55:38 -0700] "GET /b?x=1 HTTP/1.0" 200 -`
	)
	tests := []struct {
		name, log string
		requests  int
		length    time.Duration
		latency   time.Duration // mean; -1 for none
		err       string        // a part of the error, "" for none
	}{
		{"common", a + "\n" + b + "\n", 2, 3 * time.Second, -1, ""},
		{"out of order", b + "\n" + a + "\n", 2, 3 * time.Second, -1, ""},
		{"combined", a + ` "-" "Mozilla/5.0 (X; \"quoted\")"` + "\n", 1, time.Second, -1, ""},
		{"seconds", a + ` "-" "curl" 0.250` + "\n", 1, time.Second, 250 * time.Millisecond, ""},
		{"microseconds", a + " 250000\n", 1, time.Second, 250 * time.Millisecond, ""},
		{"duration", a + " rt=25ms\n", 1, time.Second, 25 * time.Millisecond, ""},
		{"not a latency", a + " host=example.com\n", 1, time.Second, -1, ""},
		{"latency before quotes", a + ` 0.5 "-" "curl"` + "\n", 1, time.Second, -1, ""},
		{"bad time", a + "\n" + `1.2.3.4 - - [10/Oct/2000 13:55:36] "GET / HTTP/1.0" 200 5` + "\n", 0, 0, 0, "line 2: timestamp"},
		{"no request", "# c\n" + `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] 200 5` + "\n", 0, 0, 0, "line 2: no quoted request"},
		{"bad status", `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" ok 5`, 0, 0, 0, "line 1: status"},
		{"few fields", `1.2.3.4 - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 5`, 0, 0, 0, "line 1: want host"},
		{"unclosed quote", a + ` "-` + "\n", 0, 0, 0, "line 1: unclosed quote"},
		{"year 1", `1.2.3.4 - - [01/Jan/0001:00:00:00 +0000] "GET / HTTP/1.0" 200 5`, 0, 0, 0, "line 1: timestamp \"01/Jan/0001:00:00:00 +0000\" out of range"},
		{"empty", "# nothing\n", 0, 0, 0, "no records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLog(t, simulate.FormatAccessLog, tt.log, tt.requests, tt.length, tt.latency, tt.err)
		})
	}
}

// TestReadJSONLines checks the fields a JSON line may carry and that a bad line is
// refused with its number.
func TestReadJSONLines(t *testing.T) {
	tests := []struct {
		name, log string
		requests  int
		length    time.Duration
		latency   time.Duration
		err       string
	}{
		{"rfc3339", `{"timestamp":"2026-03-10T09:00:00.5Z"}` + "\n" + `{"timestamp":"2026-03-10T10:00:02+01:00"}`, 2, 3 * time.Second, -1, ""},
		{"unix seconds and ms", `{"ts":1700000000.25,"latency_ms":20}` + "\n" + `{"time":1700000001750,"duration":"40ms"}`, 2, 2 * time.Second, 30 * time.Millisecond, ""},
		{"at-timestamp, duration in seconds", `{"@timestamp":1700000000,"duration":0.1,"tenant":"a","path":"/x?y"}`, 1, time.Second, 100 * time.Millisecond, ""},
		{"first timestamp field wins", `{"timestamp":5,"time":"nonsense"}`, 1, time.Second, -1, ""},
		{"no timestamp", `{"ts":1}` + "\n" + `{"latency_ms":3}`, 0, 0, 0, "line 2: no timestamp"},
		{"not json", `{"ts":1}` + "\n\n" + `{"ts":`, 0, 0, 0, "line 3: not a JSON object"},
		{"bad rfc3339", `{"timestamp":"yesterday"}`, 0, 0, 0, "line 1: timestamp \"yesterday\" is not RFC 3339"},
		{"bool timestamp", `{"timestamp":true}`, 0, 0, 0, "line 1: timestamp true"},
		{"negative latency", `{"ts":1,"latency_ms":-1}`, 0, 0, 0, "line 1: latency_ms"},
		{"bad duration", `{"ts":1,"duration":"soon"}`, 0, 0, 0, "line 1: duration"},
		{"huge", `{"ts":1e300}`, 0, 0, 0, "out of range"},
		{"span", `{"ts":0}` + "\n" + `{"ts":60000000}`, 0, 0, 0, "span more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLog(t, simulate.FormatJSONLines, tt.log, tt.requests, tt.length, tt.latency, tt.err)
		})
	}
}

func checkLog(t *testing.T, f simulate.TraceFormat, log string, requests int, length, latency time.Duration, wantErr string) {
	t.Helper()
	for _, format := range []simulate.TraceFormat{f, simulate.FormatAuto} {
		tr, err := simulate.ReadTraceFormat(strings.NewReader(log), format)
		if wantErr != "" {
			if !errors.Is(err, simulate.ErrInvalidTrace) || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%v: err = %v, want ErrInvalidTrace with %q", format, err, wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", format, err)
		}
		if tr.Requests() != requests || tr.Length() != length {
			t.Errorf("%v: %d requests over %v, want %d over %v", format, tr.Requests(), tr.Length(), requests, length)
		}
		d, ok := tr.ServiceTime()
		if got := map[bool]time.Duration{true: d.Mean(), false: -1}[ok]; (got - latency).Abs() > time.Microsecond {
			t.Errorf("%v: mean latency %v, want %v", format, got, latency)
		}
	}
}

// FuzzReadAccessLog checks that the access-log parser never panics and that what it
// accepts holds one request per line of data, shares them out among its tenants,
// and survives WriteCounts and ReadTrace.
func FuzzReadAccessLog(f *testing.F) {
	for _, s := range []string{
		`1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 5` + "\n",
		`1.2.3.4 - bob [10/Oct/2000:13:55:38 -0700] "GET /b?x=1 HTTP/1.0" 200 - "-" "a \"b\"" 0.1` + "\n" +
			`1.2.3.4 - amy [10/Oct/2000:13:55:30 -0700] "-" 400 0 rt=5ms`,
		`h i u [01/Jan/0001:00:00:00 +0000] "" 100 0`,
		`h i u [31/Dec/9999:23:59:59 -2359] "GET" 999 1 "` + "\n",
		string(mustReadF(f, "access-combined.log")),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLog(t, simulate.FormatAccessLog, data) })
}

// FuzzReadJSONLines is FuzzReadAccessLog for JSON lines.
func FuzzReadJSONLines(f *testing.F) {
	for _, s := range []string{
		`{"timestamp":"2026-03-10T09:00:00.5Z","tenant":"a","latency_ms":3}`,
		`{"ts":1700000000.25}` + "\n" + `{"time":1700000001750,"duration":"40ms","route":"/r"}`,
		`{"@timestamp":-5,"duration":1e-9}` + "\n# c\n" + `{"ts":-4.5}`,
		`{"ts":9.2e9}` + "\n" + `{"ts":-9.2e9}`,
		string(mustReadF(f, "requests.jsonl")),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLog(t, simulate.FormatJSONLines, data) })
}

func fuzzLog(t *testing.T, format simulate.TraceFormat, data []byte) {
	tr, err := simulate.ReadTraceFormat(bytes.NewReader(data), format)
	if err != nil {
		if !errors.Is(err, simulate.ErrInvalidTrace) {
			t.Fatalf("err = %v, not ErrInvalidTrace", err)
		}
		return
	}
	lines := 0
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			lines++
		}
	}
	if tr.Requests() != lines {
		t.Fatalf("%d requests from %d lines", tr.Requests(), lines)
	}
	if m := tr.Tenants(); m != nil {
		sum := 0
		for _, ten := range m {
			sub := ten.Profile.(*simulate.Trace)
			sum += sub.Requests()
			if sub.Length() != tr.Length() {
				t.Fatalf("tenant %q spans %v, the trace %v", ten.Name, sub.Length(), tr.Length())
			}
		}
		if sum != lines {
			t.Fatalf("the tenants hold %d requests, the trace %d", sum, lines)
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := tr.ServiceTime(); ok && (d.Mean() < 0 || d.Len() > lines) {
		t.Fatalf("service time of %d samples, mean %v", d.Len(), d.Mean())
	}
	n := 0
	for _, c := range tr.Routes() {
		n += c
	}
	if n != lines {
		t.Fatalf("routes count %d requests, the trace %d", n, lines)
	}
	if math.IsNaN(tr.Rate(0)) {
		t.Fatal("Rate(0) is NaN")
	}
	checkRoundTrip(t, tr)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustReadF(f *testing.F, name string) []byte { return mustRead(f, filepath.Join("testdata", name)) }

// TestReadTraceFileByContent reads JSON lines from a .log file: a .log may hold
// either kind of log, so its content decides; a .jsonl file is JSON lines whatever
// its first line.
func TestReadTraceFileByContent(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"json.log":  `{"ts":1700000000.5}` + "\n" + `{"ts":1700000001.5}` + "\n",
		"clf.jsonl": `1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 5` + "\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := simulate.ReadTraceFile(filepath.Join(dir, "json.log"))
	if err != nil || tr.Requests() != 2 {
		t.Fatalf("json.log: %v, %v", tr, err)
	}
	if _, err := simulate.ReadTraceFile(filepath.Join(dir, "clf.jsonl")); !errors.Is(err, simulate.ErrInvalidTrace) || !strings.Contains(err.Error(), "line 1: not a JSON object") {
		t.Fatalf("clf.jsonl: err = %v, want line 1 not a JSON object", err)
	}
}
