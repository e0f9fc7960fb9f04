package simulate_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestReadTraceSizedByData reads traces of two records that span fifty
// million seconds: what ReadTrace allocates must follow the 15 bytes read,
// not the span (a dense per-second slice would be 400 MB).
func TestReadTraceSizedByData(t *testing.T) {
	const last = simulate.MaxTraceLen - 1
	tests := []struct {
		name, csv string
	}{
		{"counts", fmt.Sprintf("0,1\n%d,1\n", last)},
		{"timestamps", fmt.Sprintf("0\n%d\n", last)},
		{"counts with a header and an empty last second", fmt.Sprintf("second,count\n0,1\n%d,1\n%d,0\n", last-1, last)},
	}
	// What reading a one-line trace allocates (the scanner's buffer and the
	// record) is the floor; two records may add little to it.
	const slack = 4 << 10
	floor := allocated(t, func() {
		if _, err := simulate.ReadTrace(strings.NewReader("0,1\n")); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr *simulate.Trace
			got := allocated(t, func() {
				var err error
				if tr, err = simulate.ReadTrace(strings.NewReader(tt.csv)); err != nil {
					t.Fatal(err)
				}
			})
			if got > floor+slack {
				t.Errorf("ReadTrace(%q) allocated %d bytes, want at most %d (one record's %d + %d)", tt.csv, got, floor+slack, floor, slack)
			}
			if allocs := testing.AllocsPerRun(10, func() { _, _ = simulate.ReadTrace(strings.NewReader(tt.csv)) }); allocs > 30 {
				t.Errorf("ReadTrace(%q) made %v allocations, want at most 30", tt.csv, allocs)
			}
			if tr.Length() != simulate.MaxTraceLen*time.Second {
				t.Errorf("Length = %v, want %v", tr.Length(), simulate.MaxTraceLen*time.Second)
			}
			if tr.Requests() != 2 {
				t.Errorf("Requests = %d, want 2", tr.Requests())
			}
			for _, sec := range []int64{0, 1, last - 1, last, last + 1} {
				wantRate := 0.0
				switch {
				case sec == 0:
					wantRate = 1
				case sec == last && !strings.Contains(tt.name, "empty last"):
					wantRate = 1
				case sec == last-1 && strings.Contains(tt.name, "empty last"):
					wantRate = 1
				}
				if got := tr.Rate(time.Duration(sec) * time.Second); got != wantRate {
					t.Errorf("Rate(second %d) = %v, want %v", sec, got, wantRate)
				}
			}
		})
	}
}

// allocated returns the bytes f allocates, the mean of runtime.MemStats.TotalAlloc
// over 20 runs (one run is noisy by a kilobyte or two).
func allocated(t *testing.T, f func()) uint64 {
	t.Helper()
	const runs = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// TestWriteCountsRoundTrip writes traces as counts and reads them back: the
// same length, requests and rate in every second.
func TestWriteCountsRoundTrip(t *testing.T) {
	for _, csv := range []string{
		"0,3\n1,0\n4,2\n",
		"0,3\n7,0\n",
		"0.5\n0.7\n3.2\n",
		"1700000000,4\n1700000005,6\n",
	} {
		t.Run(csv, func(t *testing.T) {
			tr, err := simulate.ReadTrace(strings.NewReader(csv))
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, tr)
		})
	}
}

func checkRoundTrip(t *testing.T, tr *simulate.Trace) {
	t.Helper()
	var buf bytes.Buffer
	if err := tr.WriteCounts(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := simulate.ReadTrace(&buf)
	if err != nil {
		t.Fatalf("ReadTrace(WriteCounts) = %v", err)
	}
	if back.Length() != tr.Length() || back.Requests() != tr.Requests() {
		t.Fatalf("read back %d requests over %v, want %d over %v", back.Requests(), back.Length(), tr.Requests(), tr.Length())
	}
	// Check every second of a short trace, and the ends of a long one.
	secs := []time.Duration{0, tr.Length() - time.Second, tr.Length()}
	if tr.Length() <= 1000*time.Second {
		secs = secs[:0]
		for s := time.Duration(0); s <= tr.Length(); s += time.Second {
			secs = append(secs, s)
		}
	}
	for _, s := range secs {
		if got, want := back.Rate(s), tr.Rate(s); got != want {
			t.Fatalf("Rate(%v) read back = %v, want %v", s, got, want)
		}
	}
}

// FuzzReadTrace checks that ReadTrace never panics, that what it accepts
// holds at most one count per record (memory follows the data), and that it
// survives WriteCounts and ReadTrace again.
func FuzzReadTrace(f *testing.F) {
	for _, s := range []string{
		"0,1\n49999999,1\n", "0\n49999999\n", "second,count\n0,10\n1,20\n3,5\n",
		"timestamp\n1700000000.1\n1700000000.5\n1700000002.25\n", "# c\n0.5\n\n0.7\n",
		"0,1\n0,2\n", "0,1.5\n", "NaN\n", "1e300\n", "-5,1\n-4,2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := simulate.ReadTrace(bytes.NewReader(data))
		if err != nil {
			return
		}
		if tr.Length() <= 0 {
			t.Fatalf("Length = %v", tr.Length())
		}
		lines := bytes.Count(data, []byte{'\n'}) + 1
		if n := tr.Requests(); n < 0 {
			t.Fatalf("Requests = %d", n)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = simulate.ReadTrace(bytes.NewReader(data))
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(256<<10+lines*256+len(data)*16) {
			t.Fatalf("ReadTrace of %d bytes, %d lines allocated %d bytes", len(data), lines, alloc)
		}
		checkRoundTrip(t, tr)
	})
}
