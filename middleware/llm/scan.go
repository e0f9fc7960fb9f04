package llm

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A small validating JSON scanner over a byte slice: it walks values without building
// them, so the parser pulls the few fields it needs from a request body without
// allocating. It accepts exactly RFC 8259 JSON (strings must be valid UTF-8).

// maxDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxDepth = 128

var (
	errSyntax = errors.New("llm: malformed JSON")
	errUTF8   = errors.New("llm: invalid UTF-8 in a JSON string")
	errDepth  = errors.New("llm: JSON nested too deeply")
)

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// counts are the character classes of a prompt's text, the estimator's features.
type counts struct {
	alnum, space, punct int64 // ASCII letters and digits, spaces, other ASCII
	ws                  int64 // tabs, newlines and carriage returns
	latin               int64 // runes of Latin-1 and Latin Extended (U+0080..U+024F)
	r2                  int64 // other runes of 2 bytes in UTF-8 (Cyrillic, Greek, Arabic, ...)
	hangul              int64 // Hangul syllables and jamo
	r3                  int64 // other runes of 3 bytes (CJK, kana, ...)
	r4                  int64 // runes of 4 bytes (emoji, rare CJK)
}

func (c *counts) add(o counts) {
	c.alnum += o.alnum
	c.space += o.space
	c.ws += o.ws
	c.punct += o.punct
	c.latin += o.latin
	c.r2 += o.r2
	c.hangul += o.hangul
	c.r3 += o.r3
	c.r4 += o.r4
}

func (c *counts) bytes() int64 {
	return c.alnum + c.space + c.ws + c.punct + 2*(c.latin+c.r2) + 3*(c.hangul+c.r3) + 4*c.r4
}

// rune counts a rune at or above U+0080 in its class.
func (c *counts) rune(r rune) {
	switch {
	case r < 0x250:
		c.latin++
	case r < 0x800:
		c.r2++
	case r >= 0xAC00 && r <= 0xD7A3 || r >= 0x1100 && r <= 0x11FF || r >= 0x3130 && r <= 0x318F:
		c.hangul++
	case r < 0x10000:
		c.r3++
	default:
		c.r4++
	}
}

// asciiClass: 0 other ASCII (punctuation), 1 letter or digit, 2 space, 3 needs care
// (quote, backslash, control character, or a byte at or above 0x80). Raw tabs and
// newlines cannot appear in a JSON string; escaped ones count as ws.
var asciiClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c < 0x20 || c == '"' || c == '\\' || c >= 0x80:
			t[c] = 3
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			t[c] = 1
		case c == ' ':
			t[c] = 2
		}
	}
	return t
}()

// scanString scans the string starting at b[i] (a quote) and returns the index after
// its closing quote and whether it holds escapes. When c is not nil it counts the
// string's decoded characters into it.
func scanString(b []byte, i int, c *counts) (int, bool, error) {
	if i >= len(b) || b[i] != '"' {
		return i, false, errSyntax
	}
	i++
	esc := false
	var n counts
	for i < len(b) {
		// Eight bytes at a time: the plain ASCII ones (no quote, backslash, control
		// or non-ASCII byte) before the first that needs care are counted with word
		// arithmetic, and the switch below takes that one.
		if c == nil {
			for i+8 <= len(b) {
				if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
			}
		} else {
			for i+8 <= len(b) {
				x := binary.LittleEndian.Uint64(b[i:])
				if m := special(x); m != 0 {
					if k := bits.TrailingZeros64(m) >> 3; k > 0 {
						a, sp := classes(x & (1<<(8*k) - 1)) // zero bytes count in no class
						n.alnum += a
						n.space += sp
						n.punct += int64(k) - a - sp
						i += k
					}
					break
				}
				a, sp := classes(x)
				n.alnum += a
				n.space += sp
				n.punct += 8 - a - sp
				i += 8
			}
		}
		if i >= len(b) {
			break
		}
		ch := b[i]
		switch asciiClass[ch] {
		case 0:
			n.punct++
			i++
			continue
		case 1:
			n.alnum++
			i++
			continue
		case 2:
			n.space++
			i++
			continue
		}
		switch {
		case ch == '"':
			if c != nil {
				c.add(n)
			}
			return i + 1, esc, nil
		case ch == '\\':
			esc = true
			if i+1 >= len(b) {
				return i, esc, errSyntax
			}
			switch b[i+1] {
			case 'n', 't', 'r':
				n.ws++
				i += 2
			case '"', '\\', '/', 'b', 'f':
				n.punct++
				i += 2
			case 'u':
				r, next, ok := unicodeEscape(b, i)
				if !ok {
					return i, esc, errSyntax
				}
				i = next
				if r < 0x80 {
					switch {
					case asciiClass[r] == 1:
						n.alnum++
					case r == ' ':
						n.space++
					case r == '\t' || r == '\n' || r == '\r':
						n.ws++
					default:
						n.punct++
					}
				} else {
					n.rune(r)
				}
			default:
				return i, esc, errSyntax
			}
		case ch < 0x20:
			return i, esc, errSyntax
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, esc, errUTF8
			}
			n.rune(r)
			i += size
		}
	}
	return i, esc, errSyntax
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special marks the bytes of x that are a quote, a backslash, a control character or
// at or above 0x80, by their high bits (Mycroft's has-zero-byte test, on x and on x
// xor the byte). A borrow may mark a byte above a marked one too, never below, so the
// lowest mark is exact: it is the first byte that needs care.
func special(x uint64) uint64 {
	hasZero := func(v uint64) uint64 { return (v - lsb) &^ v & msb }
	return x&msb | (x-0x20*lsb)&^x&msb | hasZero(x^('"'*lsb)) | hasZero(x^('\\'*lsb))
}

// classes counts the letters and digits, and the spaces, among eight ASCII bytes. For
// bytes below 0x80, ((x | 0x80) - n) & 0x80 marks each byte at or above n without a
// borrow crossing bytes.
func classes(x uint64) (alnum, space int64) {
	ge := func(n uint64) uint64 { return ((x | msb) - n*lsb) & msb }
	digit := ge('0') &^ ge('9'+1)
	upper := ge('A') &^ ge('Z'+1)
	lower := ge('a') &^ ge('z'+1)
	sp := ge(' ') &^ ge(' '+1)
	return int64(bits.OnesCount64(digit | upper | lower)), int64(bits.OnesCount64(sp))
}

// unicodeEscape decodes the \uXXXX escape at b[i] (and its low surrogate when it is a
// high one), returning the rune and the index after it. A lone surrogate decodes to
// U+FFFD, as encoding/json does.
func unicodeEscape(b []byte, i int) (rune, int, bool) {
	r, ok := hex4(b, i+2)
	if !ok {
		return 0, i, false
	}
	i += 6
	if utf16.IsSurrogate(r) {
		if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
			if r2, ok := hex4(b, i+2); ok {
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					return d, i + 6, true
				}
			}
		}
		return utf8.RuneError, i, true
	}
	return r, i, true
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, ch := range b[i : i+4] {
		switch {
		case ch >= '0' && ch <= '9':
			r = r<<4 | rune(ch-'0')
		case ch >= 'a' && ch <= 'f':
			r = r<<4 | rune(ch-'a'+10)
		case ch >= 'A' && ch <= 'F':
			r = r<<4 | rune(ch-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// unquote appends the decoded contents of the JSON string b (quotes included) to dst.
// b must have passed scanString.
func unquote(dst, b []byte) []byte {
	b = b[1 : len(b)-1]
	for i := 0; i < len(b); {
		ch := b[i]
		if ch != '\\' {
			dst = append(dst, ch)
			i++
			continue
		}
		switch b[i+1] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, next, _ := unicodeEscape(b, i)
			dst = utf8.AppendRune(dst, r)
			i = next
			continue
		default: // '"', '\\', '/'
			dst = append(dst, b[i+1])
		}
		i += 2
	}
	return dst
}

// skipValue validates and skips the value at b[i], returning the index after it.
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errDepth
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return i, errSyntax
	}
	switch ch := b[i]; {
	case ch == '"':
		j, _, err := scanString(b, i, nil)
		return j, err
	case ch == '{':
		return skipObject(b, i, depth)
	case ch == '[':
		return skipArray(b, i, depth)
	case ch == 't':
		return literal(b, i, "true")
	case ch == 'f':
		return literal(b, i, "false")
	case ch == 'n':
		return literal(b, i, "null")
	case ch == '-' || ch >= '0' && ch <= '9':
		return scanNumber(b, i)
	}
	return i, errSyntax
}

func skipObject(b []byte, i, depth int) (int, error) {
	return eachMember(b, i, func(_ []byte, j int) (int, error) { return skipValue(b, j, depth+1) })
}

func skipArray(b []byte, i, depth int) (int, error) {
	return eachElement(b, i, func(j int) (int, error) { return skipValue(b, j, depth+1) })
}

// eachMember walks the object at b[i], calling f with each member's raw key (quotes
// included) and the index of its value; f returns the index after the value.
func eachMember(b []byte, i int, f func(key []byte, j int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return i, errSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		k := i
		j, _, err := scanString(b, i, nil)
		if err != nil {
			return j, err
		}
		key := b[k:j]
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return i, errSyntax
		}
		if i = skipWS(b, i+1); i >= len(b) {
			return i, errSyntax
		}
		if i, err = f(key, i); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, errSyntax
		}
	}
}

// eachElement walks the array at b[i], calling f with the index of each element.
func eachElement(b []byte, i int, f func(j int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '[' {
		return i, errSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return i, errSyntax
		}
		var err error
		if i, err = f(i); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return i, errSyntax
		}
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, errSyntax
	}
	return i + len(lit), nil
}

// scanNumber validates the JSON number at b[i].
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return start, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return start, errSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return start, errSyntax
		}
	}
	return i, nil
}

// maxExactInt bounds the integers that all have an exact float64
// (a 53-bit mantissa), so a count over it may not be the one the client sent.
const maxExactInt = 1 << 53

// scanInt reads the JSON number at b[i] as a non-negative integer (a fraction or an
// exponent that leaves an integer is accepted: 1e3, 100.0). ok is false for anything
// else or for a value over maxExactInt.
func scanInt(b []byte, i int) (v int64, next int, ok bool, err error) {
	next, err = scanNumber(b, i)
	if err != nil {
		return 0, next, false, err
	}
	num := b[i:next]
	if num[0] == '-' {
		return 0, next, false, nil
	}
	for _, ch := range num {
		if ch < '0' || ch > '9' {
			f, perr := strconv.ParseFloat(string(num), 64)
			if perr != nil || f != math.Trunc(f) || f > maxExactInt {
				return 0, next, false, nil
			}
			return int64(f), next, true, nil
		}
		v = v*10 + int64(ch-'0')
		if v > maxExactInt {
			return 0, next, false, nil
		}
	}
	return v, next, true, nil
}
