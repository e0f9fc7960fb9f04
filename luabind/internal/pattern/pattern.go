// Package pattern matches Lua 5.1 patterns with a bounded amount of work.
//
// It is a port of the matcher in Lua 5.1's lstrlib.c (match, max_expand, min_expand,
// the captures, %b and %f), written against Go strings, with two additions a sandbox
// needs: every step of the matcher is counted and, every [CheckEvery] steps, a
// caller-supplied check may stop the match; and recursion is capped (as Lua 5.2's
// MAXCCALLS does), so no pattern can grow the Go stack without bound.
//
// gopher-lua's own matcher (package pm) cannot be stopped: a backtracking pattern
// such as "(.-)%s*x(.-)y$" on a few KB runs for seconds to hours. This one stops
// within CheckEvery steps of the check failing.
package pattern

import (
	"errors"
	"fmt"
	"strings"
)

// MaxCaptures is the most captures a pattern may have (Lua's LUA_MAXCAPTURES).
const MaxCaptures = 32

// CheckEvery is how many matcher steps pass between calls of the check.
const CheckEvery = 1024

// maxDepth caps the matcher's recursion (Lua 5.2's MAXCCALLS): one level per
// pattern item that backtracks, so only patterns with hundreds of items reach it.
const maxDepth = 200

// Specials are the bytes that make a pattern more than a plain string.
const Specials = "^$*+?.([%-"

const (
	capUnfinished = -1
	capPosition   = -2
)

// ErrPattern is wrapped by the errors a malformed pattern yields.
var ErrPattern = errors.New("malformed pattern")

// Capture is one capture of a match: a substring [Start, End) of the subject, or a
// position (Pos, 1-based as Lua reports it) for "()".
type Capture struct {
	Start, End int
	Pos        int // > 0 for a position capture
}

// Matcher matches patterns against subjects. Its zero value matches without a
// check; a Matcher is not safe for concurrent use.
type Matcher struct {
	// Check, if set, is called every CheckEvery steps; a non-nil error stops the
	// match, which then returns that error.
	Check func() error

	src, pat string
	level    int
	depth    int
	steps    int
	capStart [MaxCaptures]int
	capLen   [MaxCaptures]int
}

// stop unwinds a match; its err is what the match returns.
type stop struct{ err error }

func (m *Matcher) fail(format string, args ...any) {
	panic(stop{fmt.Errorf("%w (%s)", ErrPattern, fmt.Sprintf(format, args...))})
}

func (m *Matcher) failPlain(msg string) { panic(stop{errors.New(msg)}) }

// step counts one unit of work and runs the check when due.
func (m *Matcher) step() {
	m.steps++
	if m.steps >= CheckEvery {
		m.steps = 0
		if m.Check != nil {
			if err := m.Check(); err != nil {
				panic(stop{err})
			}
		}
	}
}

// Step counts one unit of work done by a caller between matches (gsub's and gmatch's
// advance over the subject), so that a loop of empty matches is bounded as well. It
// returns the check's error, if it stopped.
func (m *Matcher) Step() (err error) {
	defer m.recover(&err)
	m.step()
	return nil
}

func (m *Matcher) recover(err *error) {
	if r := recover(); r != nil {
		s, ok := r.(stop)
		if !ok {
			panic(r)
		}
		*err = s.err
	}
}

// Match tries the pattern p at position init (0-based) of s, exactly there (no
// scan). It returns the end of the match, or -1. Captures are then read with
// [Matcher.Captures]. A leading '^' is not special here: callers strip it.
func (m *Matcher) Match(s, p string, init int) (end int, err error) {
	defer m.recover(&err)
	m.src, m.pat = s, p
	m.level, m.depth = 0, 0
	return m.match(init, 0), nil
}

// Find scans s from init (0-based, 0..len(s)) for the first match of p, honouring a
// leading '^'. It returns the match's bounds, or start -1.
func (m *Matcher) Find(s, p string, init int) (start, end int, err error) {
	defer m.recover(&err)
	anchor := len(p) > 0 && p[0] == '^'
	pi := 0
	if anchor {
		pi = 1
	}
	m.src, m.pat = s, p
	for s1 := init; ; s1++ {
		m.level, m.depth = 0, 0
		m.step()
		if e := m.match(s1, pi); e != -1 {
			return s1, e, nil
		}
		if s1 >= len(s) || anchor {
			return -1, -1, nil
		}
	}
}

// NumCaptures is the number of captures of the last match: at least 1 when wholeIfNone
// (the whole match counts as the capture of a pattern without any).
func (m *Matcher) NumCaptures(wholeIfNone bool) int {
	if m.level == 0 && wholeIfNone {
		return 1
	}
	return m.level
}

// Capture returns capture i (0-based) of the last match from start to end; for a
// pattern without captures, capture 0 is the whole match.
func (m *Matcher) Capture(i, start, end int) (Capture, error) {
	if i >= m.level {
		if i == 0 {
			return Capture{Start: start, End: end}, nil
		}
		return Capture{}, fmt.Errorf("invalid capture index %%%d", i+1)
	}
	l := m.capLen[i]
	switch l {
	case capUnfinished:
		return Capture{}, errors.New("unfinished capture")
	case capPosition:
		return Capture{Pos: m.capStart[i] + 1}, nil
	}
	return Capture{Start: m.capStart[i], End: m.capStart[i] + l}, nil
}

// HasSpecials reports whether p has any byte that makes it a pattern.
func HasSpecials(p string) bool { return strings.ContainsAny(p, Specials) }

func (m *Matcher) classEnd(p int) int {
	pat := m.pat
	c := pat[p]
	p++
	if c == '%' {
		if p >= len(pat) {
			m.fail("ends with '%%'")
		}
		return p + 1
	}
	if c == '[' {
		if p < len(pat) && pat[p] == '^' {
			p++
		}
		for { // look for a ']'
			if p >= len(pat) {
				m.fail("missing ']'")
			}
			c := pat[p]
			p++
			if c == '%' {
				if p >= len(pat) {
					m.fail("missing ']'")
				}
				p++
			}
			if p < len(pat) && pat[p] == ']' {
				return p + 1
			}
			if p >= len(pat) {
				m.fail("missing ']'")
			}
		}
	}
	return p
}

func isalpha(c byte) bool  { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isdigit(c byte) bool  { return '0' <= c && c <= '9' }
func islower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isupper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isspace(c byte) bool  { return c == ' ' || '\t' <= c && c <= '\r' }
func iscntrl(c byte) bool  { return c < 32 || c == 127 }
func ispunct(c byte) bool  { return c > 32 && c < 127 && !isalpha(c) && !isdigit(c) }
func isxdigit(c byte) bool { return isdigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func singleClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isalpha(c)
	case 'c':
		res = iscntrl(c)
	case 'd':
		res = isdigit(c)
	case 'l':
		res = islower(c)
	case 'p':
		res = ispunct(c)
	case 's':
		res = isspace(c)
	case 'u':
		res = isupper(c)
	case 'w':
		res = isalpha(c) || isdigit(c)
	case 'x':
		res = isxdigit(c)
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if isupper(cl) {
		return !res
	}
	return res
}

// matchClass reports whether c is in the set [p, ec), p at the '[' and ec-1 at the ']'.
func (m *Matcher) matchBracketClass(c byte, p, ec int) bool {
	pat := m.pat
	sig := true
	if pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		m.step()
		switch {
		case pat[p] == '%':
			p++
			if singleClass(c, pat[p]) {
				return sig
			}
		case p+2 < ec && pat[p+1] == '-':
			if pat[p] <= c && c <= pat[p+2] {
				return sig
			}
			p += 2
		case pat[p] == c:
			return sig
		}
	}
	return !sig
}

func (m *Matcher) singleMatch(s, p, ep int) bool {
	if s >= len(m.src) {
		return false
	}
	c := m.src[s]
	switch m.pat[p] {
	case '.':
		return true
	case '%':
		return singleClass(c, m.pat[p+1])
	case '[':
		return m.matchBracketClass(c, p, ep-1)
	}
	return m.pat[p] == c
}

func (m *Matcher) matchBalance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.failPlain("missing arguments to '%b'")
	}
	src := m.src
	if s >= len(src) || src[s] != m.pat[p] {
		return -1
	}
	b, e := m.pat[p], m.pat[p+1]
	cont := 1
	for s++; s < len(src); s++ {
		m.step()
		switch src[s] {
		case e:
			cont--
			if cont == 0 {
				return s + 1
			}
		case b:
			cont++
		}
	}
	return -1
}

func (m *Matcher) maxExpand(s, p, ep int) int {
	i := 0
	for m.singleMatch(s+i, p, ep) {
		m.step()
		i++
	}
	for ; i >= 0; i-- { // try with the most repetitions, then fewer
		m.step()
		if res := m.match(s+i, ep+1); res != -1 {
			return res
		}
	}
	return -1
}

func (m *Matcher) minExpand(s, p, ep int) int {
	for {
		m.step()
		if res := m.match(s, ep+1); res != -1 {
			return res
		}
		if !m.singleMatch(s, p, ep) {
			return -1
		}
		s++
	}
}

func (m *Matcher) startCapture(s, p, what int) int {
	if m.level >= MaxCaptures {
		m.failPlain("too many captures")
	}
	m.capStart[m.level] = s
	m.capLen[m.level] = what
	m.level++
	res := m.match(s, p)
	if res == -1 {
		m.level-- // undo capture
	}
	return res
}

func (m *Matcher) endCapture(s, p int) int {
	l := m.captureToClose()
	m.capLen[l] = s - m.capStart[l]
	res := m.match(s, p)
	if res == -1 {
		m.capLen[l] = capUnfinished
	}
	return res
}

func (m *Matcher) captureToClose() int {
	for level := m.level - 1; level >= 0; level-- {
		if m.capLen[level] == capUnfinished {
			return level
		}
	}
	m.failPlain("invalid pattern capture")
	return 0
}

func (m *Matcher) checkCapture(l byte) int {
	i := int(l) - '1'
	if i < 0 || i >= m.level || m.capLen[i] == capUnfinished {
		m.failPlain(fmt.Sprintf("invalid capture index %%%d", i+1))
	}
	return i
}

func (m *Matcher) matchCapture(s int, l byte) int {
	i := m.checkCapture(l)
	n := m.capLen[i]
	if n == capPosition { // Lua compares a size_t of -2: never equal
		return -1
	}
	if len(m.src)-s >= n && m.src[m.capStart[i]:m.capStart[i]+n] == m.src[s:s+n] {
		m.steps += n / 64
		return s + n
	}
	return -1
}

// match returns the end of a match of pattern from p at subject position s, or -1.
func (m *Matcher) match(s, p int) int {
	m.depth++
	if m.depth > maxDepth {
		m.failPlain("pattern too complex")
	}
	r := m.doMatch(s, p)
	m.depth--
	return r
}

func (m *Matcher) doMatch(s, p int) int {
	pat := m.pat
	for {
		m.step()
		if p >= len(pat) { // end of pattern
			return s
		}
		switch pat[p] {
		case '(':
			if p+1 < len(pat) && pat[p+1] == ')' {
				return m.startCapture(s, p+2, capPosition)
			}
			return m.startCapture(s, p+1, capUnfinished)
		case ')':
			return m.endCapture(s, p+1)
		case '%':
			if p+1 < len(pat) {
				switch c := pat[p+1]; {
				case c == 'b':
					s = m.matchBalance(s, p+2)
					if s == -1 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					p += 2
					if p >= len(pat) || pat[p] != '[' {
						m.failPlain("missing '[' after '%f' in pattern")
					}
					ep := m.classEnd(p)
					var prev, cur byte
					if s > 0 {
						prev = m.src[s-1]
					}
					if s < len(m.src) {
						cur = m.src[s]
					}
					if m.matchBracketClass(prev, p, ep-1) || !m.matchBracketClass(cur, p, ep-1) {
						return -1
					}
					p = ep
					continue
				case isdigit(c):
					s = m.matchCapture(s, c)
					if s == -1 {
						return -1
					}
					p += 2
					continue
				}
			}
		case '$':
			if p+1 == len(pat) { // the end of the pattern: match only at the subject's end
				if s == len(m.src) {
					return s
				}
				return -1
			}
		}
		ep := m.classEnd(p)
		var epc byte
		if ep < len(pat) {
			epc = pat[ep]
		}
		switch epc {
		case '?':
			if m.singleMatch(s, p, ep) {
				if res := m.match(s+1, ep+1); res != -1 {
					return res
				}
			}
			p = ep + 1
		case '*':
			return m.maxExpand(s, p, ep)
		case '+':
			if !m.singleMatch(s, p, ep) {
				return -1
			}
			return m.maxExpand(s+1, p, ep)
		case '-':
			return m.minExpand(s, p, ep)
		default:
			if !m.singleMatch(s, p, ep) {
				return -1
			}
			s++
			p = ep
		}
	}
}
