package pattern

import (
	"errors"
	"testing"
)

// FuzzFind matches fuzzed patterns against fuzzed subjects: no panic but the
// matcher's own errors, and every match stops once its check fails (here after
// 1,000 checks, about a million steps).
func FuzzFind(f *testing.F) {
	f.Add("hello world", "(%w+) (%w+)", 0)
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ".-.-.-.-x", 0)
	f.Add("f(a(b)c)d", "%b()", 1)
	f.Add("THE (quick) fox", "%f[%a]%a+", 3)
	f.Add("x", "[%", 0)
	f.Add("key = val", "^(%a+)%s*=%s*(.-)%s*$", 0)
	stopped := errors.New("stopped")
	f.Fuzz(func(t *testing.T, s, p string, init int) {
		if init < 0 || init > len(s) {
			init = 0
		}
		checks := 0
		m := Matcher{Check: func() error {
			checks++
			if checks >= 1000 {
				return stopped
			}
			return nil
		}}
		start, end, err := m.Find(s, p, init)
		if err != nil {
			return
		}
		if start < 0 {
			return
		}
		if start < init || end < start || end > len(s) {
			t.Fatalf("Find(%q, %q, %d) = %d, %d", s, p, init, start, end)
		}
		for i := range m.NumCaptures(true) {
			c, err := m.Capture(i, start, end)
			if err != nil {
				continue
			}
			if c.Pos == 0 && (c.Start < 0 || c.End < c.Start || c.End > len(s)) {
				t.Fatalf("capture %d = %+v of %q", i, c, s)
			}
		}
	})
}
