package luabind

import (
	"fmt"
	"math"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// strFormat is string.format as Lua 5.1 defines it (lstrlib.c's str_format): the
// conversions c d i o u x X e E f g G q s and %%, flags "-+ #0", width and precision
// of at most two digits each. Each conversion's text is at most a few hundred bytes
// (or, for %s and %q, the argument's own length, checked first), and the result is
// refused before it would pass MaxStringLen. Go's argument indexes (%[1]s) and verbs
// (%v, %T, ...) are not Lua's and are refused.
func (v *vm) strFormat(L *lua.LState) int {
	f := L.CheckString(1)
	b := v.newBuf("string.format")
	arg := 1
	var spec [16]byte
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' {
			b.addByte(L, c)
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			b.addByte(L, '%')
			continue
		}
		// Scan the spec: flags, width, precision (Lua 5.1's scanformat).
		start := i
		for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
			i++
		}
		if i-start > 5 {
			L.RaiseError("invalid format (repeated flags)")
		}
		digits := func() int {
			n, d := 0, 0
			for i < len(f) && f[i] >= '0' && f[i] <= '9' {
				d = d*10 + int(f[i]-'0')
				i++
				n++
			}
			if n > 2 {
				L.RaiseError("invalid format (width or precision too long)")
			}
			return d
		}
		width := digits()
		hasPrec, prec := false, 0
		if i < len(f) && f[i] == '.' {
			hasPrec = true
			i++
			prec = digits()
		}
		left := strings.IndexByte(f[start:i], '-') >= 0
		if i >= len(f) {
			L.RaiseError("invalid option '%%' to 'format'")
		}
		conv := f[i]
		sp := append(append(spec[:0], '%'), f[start:i]...)
		arg++
		switch conv {
		case 'c':
			b.addByte(L, byte(L.CheckInt(arg)))
		case 'd', 'i':
			n := L.CheckNumber(arg)
			b.add(L, fmtNumber(sp, 'd', int64Of(float64(n))))
		case 'o', 'u', 'x', 'X':
			n := uint64(int64Of(float64(L.CheckNumber(arg))))
			verb := conv
			if verb == 'u' {
				verb = 'd'
			}
			b.add(L, fmtNumber(sp, verb, n))
		case 'e', 'E', 'f', 'g', 'G':
			n := float64(L.CheckNumber(arg))
			if !hasPrec && (conv == 'g' || conv == 'G') {
				sp = append(sp, ".6"...) // C's default; Go's %g is the shortest form
			}
			b.add(L, fmtNumber(sp, conv, n))
		case 'q':
			v.formatQuoted(L, &b, L.CheckString(arg))
		case 's':
			s := L.ToStringMeta(L.CheckAny(arg)).String()
			if !hasPrec && len(s) >= 100 {
				b.add(L, s) // Lua adds long strings unformatted
				continue
			}
			// Precision and width count bytes, as in C (Go's fmt counts runes).
			if hasPrec && prec < len(s) {
				s = s[:prec]
			}
			pad := max(width-len(s), 0)
			if !left {
				b.add(L, spaces[:pad])
			}
			b.add(L, s)
			if left {
				b.add(L, spaces[:pad])
			}
		default:
			L.RaiseError("invalid option '%%%c' to 'format'", conv)
		}
	}
	L.Push(b.result())
	return 1
}

// spaces pads %s to a width of at most 99.
const spaces = "                                                                                                    "

// int64Of converts as C's (long) cast does for the values a double can hold, and
// saturates outside them.
func int64Of(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// fmtNumber formats one conversion with Go's fmt; sp holds '%', flags, width and
// precision, each at most two digits, so the text is at most a few hundred bytes.
func fmtNumber[T int64 | uint64 | float64 | string](sp []byte, verb byte, x T) string {
	return fmt.Sprintf(string(append(sp, verb)), x)
}

// formatQuoted appends s as Lua 5.1's %q writes it.
func (v *vm) formatQuoted(L *lua.LState, b *buf, s string) {
	if len(s) > b.max {
		L.RaiseError("%s: result longer than %d bytes (limit)", b.fn, b.max)
	}
	b.addByte(L, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			b.addByte(L, '\\')
			b.addByte(L, c)
		case '\r':
			b.add(L, `\r`)
		case 0:
			b.add(L, `\000`)
		default:
			b.addByte(L, c)
		}
	}
	b.addByte(L, '"')
}
