package latencybench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// WrkConfig says how to run wrk, the closed-loop throughput client (Debian's package
// wrk), against each server.
type WrkConfig struct {
	// Path is the wrk binary. Default: "wrk" on the PATH.
	Path string
	// Threads and Connections are wrk's -t and -c. Defaults 2 and 32.
	Threads, Connections int
	// Round is one run's length (wrk's -d). Default 3 s.
	Round time.Duration
	// Rounds is the number of runs per server, interleaved. Default 5.
	Rounds int
	// Headers are cycled through, one request each (a Lua script sets them); nil
	// sends wrk's plain GET.
	Headers []map[string]string
}

// WrkResult is one server's throughput under wrk.
type WrkResult struct {
	Name string
	// PerSecond is the median over rounds of wrk's Requests/sec; Rounds holds each.
	PerSecond float64
	Rounds    []float64
}

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors:.*`)
)

// Wrk runs wrk against each of urls (name → URL, in the order of names), rounds
// interleaved, and returns each one's median requests per second. A run that reports
// a non-2xx response or a socket error is an error.
func Wrk(ctx context.Context, cfg WrkConfig, names []string, urls map[string]string) ([]WrkResult, error) {
	if cfg.Path == "" {
		cfg.Path = "wrk"
	}
	path, err := exec.LookPath(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("latencybench: wrk: %w (scripts/bench.sh installs it)", err)
	}
	if cfg.Threads <= 0 {
		cfg.Threads = 2
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 32
	}
	if cfg.Round <= 0 {
		cfg.Round = 3 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	var script string
	if len(cfg.Headers) > 0 {
		dir, err := os.MkdirTemp("", "latencybench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		script = filepath.Join(dir, "headers.lua")
		if err := os.WriteFile(script, wrkScript(cfg.Headers), 0o644); err != nil {
			return nil, err
		}
	}
	rs := make([]WrkResult, len(names))
	for i, n := range names {
		rs[i].Name = n
	}
	for range cfg.Rounds {
		for i, n := range names {
			args := []string{"-t", strconv.Itoa(cfg.Threads), "-c", strconv.Itoa(cfg.Connections),
				"-d", fmt.Sprintf("%ds", max(1, int(cfg.Round.Round(time.Second).Seconds())))}
			if script != "" {
				args = append(args, "-s", script)
			}
			out, err := exec.CommandContext(ctx, path, append(args, urls[n])...).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("latencybench: wrk %s: %w\n%s", n, err, out)
			}
			rate, err := parseWrk(out)
			if err != nil {
				return nil, fmt.Errorf("latencybench: wrk %s: %w\n%s", n, err, out)
			}
			rs[i].Rounds = append(rs[i].Rounds, rate)
		}
	}
	for i := range rs {
		s := slices.Clone(rs[i].Rounds)
		slices.Sort(s)
		rs[i].PerSecond = s[len(s)/2]
	}
	return rs, nil
}

// parseWrk reads wrk's report: its requests per second, or an error if any request
// failed.
func parseWrk(out []byte) (float64, error) {
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		return 0, fmt.Errorf("%s non-2xx responses", m[1])
	}
	if m := wrkErrors.Find(out); m != nil {
		return 0, fmt.Errorf("%s", m)
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no Requests/sec in wrk's output")
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// wrkScript is a wrk Lua script that sends the header sets in turn.
func wrkScript(headers []map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("local sets = {\n")
	for _, h := range headers {
		b.WriteString("  {")
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "[%q] = %q, ", k, h[k])
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i % #sets + 1\n  return wrk.format(nil, nil, sets[i])\nend\n")
	return b.Bytes()
}
