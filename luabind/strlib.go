package luabind

import (
	"errors"
	"strconv"
	"strings"

	"github.com/autoscalelua/autoscalelua/luabind/internal/pattern"
	lua "github.com/yuin/gopher-lua"
)

// The string functions below replace gopher-lua's find, match, gmatch, gsub, format,
// rep, byte and char. gopher-lua's matcher cannot be interrupted (a backtracking
// pattern on a few KB runs for hours inside one Go call), its gsub copies the whole
// result once per match (quadratic), its gmatch finds every match before the first
// iteration, and its format hands the script's format to Go's fmt, whose argument
// indexes (%[1]s) build any length. These follow Lua 5.1's lstrlib.c, match with
// internal/pattern (whose work is counted and checked against the call's context
// every pattern.CheckEvery steps), and bound every result by MaxStringLen before
// allocating it.

// errBudget is what budgetCheck returns once the call's deadline has passed.
var errBudget = errors.New("time budget exceeded")

// budgetCheck is the check of the Go-side library functions that loop on script
// input (the matcher, table.sort): the call's context, done once the Lua loop saw the
// deadline pass, and the deadline itself, read directly, since the loop does not run
// while a library function does.
func (v *vm) budgetCheck() error {
	ctx := v.L.Context()
	if ctx == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if v.budget.expired() {
		v.overran = true
		return errBudget
	}
	return nil
}

// patternError raises a matcher's error: a budget's end as a time-out (the pcall
// reports it as such), anything else as the pattern's error.
func (v *vm) patternError(L *lua.LState, fn string, err error) {
	L.RaiseError("string.%s: %s", fn, err.Error())
}

// buf accumulates a result no longer than max bytes: MaxStringLen, or what is left
// of the call's MaxCallBytes if less.
type buf struct {
	b    strings.Builder
	max  int
	fn   string
	v    *vm
	call bool // max is the call's allowance, not MaxStringLen
}

func (v *vm) newBuf(fn string) buf {
	b := buf{max: v.rt.cfg.limits.MaxStringLen, fn: fn, v: v}
	if left := v.rt.cfg.limits.MaxCallBytes - v.built; left < b.max {
		b.max, b.call = max(left, 0), true
	}
	return b
}

func (b *buf) over(L *lua.LState) {
	if b.call {
		L.RaiseError("%s: the call's strings would pass MaxCallBytes, %d bytes (limit)", b.fn, b.v.rt.cfg.limits.MaxCallBytes)
	}
	L.RaiseError("%s: result longer than %d bytes (limit)", b.fn, b.max)
}

func (b *buf) add(L *lua.LState, s string) {
	if b.b.Len()+len(s) > b.max {
		b.over(L)
	}
	b.b.WriteString(s)
}

func (b *buf) addByte(L *lua.LState, c byte) {
	if b.b.Len()+1 > b.max {
		b.over(L)
	}
	b.b.WriteByte(c)
}

// result returns the built string, charged to the call's allowance.
func (b *buf) result() lua.LString {
	b.v.built += b.b.Len()
	return lua.LString(b.b.String())
}

// charge counts n bytes the call is about to build against MaxCallBytes, raising
// before they are allocated when they would pass it.
func (v *vm) charge(L *lua.LState, fn string, n int) {
	if lim := v.rt.cfg.limits.MaxCallBytes; n > lim-v.built {
		L.RaiseError("%s: the call's strings would pass MaxCallBytes, %d bytes (limit)", fn, lim)
	}
	v.built += n
}

// posrelat turns a Lua string position (negative from the end) into a 1-based one
// no less than 0.
func posrelat(pos, n int) int {
	if pos < 0 {
		pos += n + 1
	}
	return max(pos, 0)
}

func (v *vm) installStrings(str *lua.LTable) {
	L := v.L
	v.pm.Check = v.budgetCheck
	set := func(name string, fn lua.LGFunction) { str.RawSetString(name, L.NewFunction(fn)) }
	set("find", func(L *lua.LState) int { return v.strFind(L, true) })
	set("match", func(L *lua.LState) int { return v.strFind(L, false) })
	set("gmatch", v.strGmatch)
	str.RawSetString("gfind", lua.LNil)
	set("gsub", v.strGsub)
	set("format", v.strFormat)
	set("rep", v.strRep)
	set("byte", v.strByte)
	set("char", v.strChar)
	// lower, upper and reverse build a copy of a string the script may have grown
	// with `..` past MaxStringLen: bounded and charged like the others.
	for _, name := range [...]string{"lower", "upper", "reverse"} {
		orig := str.RawGetString(name).(*lua.LFunction).GFunction
		fn := "string." + name
		set(name, func(L *lua.LState) int {
			n := len(L.CheckString(1))
			if n > v.rt.cfg.limits.MaxStringLen {
				L.RaiseError("%s: result longer than %d bytes (limit)", fn, v.rt.cfg.limits.MaxStringLen)
			}
			v.charge(L, fn, n)
			return orig(L)
		})
	}
	str.RawSetString("dump", lua.LNil)
	// gopher-lua makes the module its own __index; ("").__index would then reach the
	// module table past its read-only proxy.
	str.RawSetString("__index", lua.LNil)
}

// pushCaptures pushes the captures of the matcher's last match from s to e (all of
// them, or the whole match when the pattern has none and whole is set), and returns
// how many it pushed.
func (v *vm) pushCaptures(L *lua.LState, src string, s, e int, whole bool, fn string) int {
	n := v.pm.NumCaptures(whole)
	if L.GetTop()+n > v.rt.cfg.limits.RegistryMaxSize {
		L.RaiseError("string.%s: too many captures (limit)", fn)
	}
	for i := range n {
		c, err := v.pm.Capture(i, s, e)
		if err != nil {
			v.patternError(L, fn, err)
		}
		if c.Pos > 0 {
			L.Push(lua.LNumber(c.Pos))
		} else {
			L.Push(lua.LString(src[c.Start:c.End]))
		}
	}
	return n
}

// strFind is string.find (find) and string.match (!find).
func (v *vm) strFind(L *lua.LState, find bool) int {
	fn := "match"
	if find {
		fn = "find"
	}
	s := L.CheckString(1)
	p := L.CheckString(2)
	init := posrelat(L.OptInt(3, 1), len(s)) - 1
	init = min(max(init, 0), len(s))
	if find && (lua.LVAsBool(L.Get(4)) || !pattern.HasSpecials(p)) {
		i := strings.Index(s[init:], p)
		if i < 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(init + i + 1))
		L.Push(lua.LNumber(init + i + len(p)))
		return 2
	}
	start, end, err := v.pm.Find(s, p, init)
	if err != nil {
		v.patternError(L, fn, err)
	}
	if start < 0 {
		L.Push(lua.LNil)
		return 1
	}
	if find {
		L.Push(lua.LNumber(start + 1))
		L.Push(lua.LNumber(end))
		return 2 + v.pushCaptures(L, s, start, end, false, fn)
	}
	return v.pushCaptures(L, s, start, end, true, fn)
}

// strGmatch is string.gmatch: an iterator that finds one match per call, as Lua 5.1's
// gmatch_aux does (a '^' is an ordinary character here).
func (v *vm) strGmatch(L *lua.LState) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		for ; pos <= len(s); pos++ {
			e, err := v.pm.Match(s, p, pos)
			if err != nil {
				v.patternError(L, "gmatch", err)
			}
			if e != -1 {
				start := pos
				pos = e
				if e == start {
					pos++ // an empty match: go on at least one position
				}
				return v.pushCaptures(L, s, start, e, true, "gmatch")
			}
		}
		return 0
	}))
	return 1
}

// strGsub is string.gsub: linear in the subject, its result bounded by MaxStringLen,
// its matching by the budget.
func (v *vm) strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	p := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	anchor := p != "" && p[0] == '^'
	if anchor {
		p = p[1:]
	}
	b := v.newBuf("string.gsub")
	s, n := 0, 0
	for n < maxN {
		e, err := v.pm.Match(src, p, s)
		if err != nil {
			v.patternError(L, "gsub", err)
		}
		if e != -1 {
			n++
			v.gsubValue(L, &b, src, s, e, repl)
		}
		switch {
		case e != -1 && e > s:
			s = e
		case s < len(src):
			b.addByte(L, src[s])
			s++
		default:
			goto done
		}
		if anchor {
			break
		}
	}
done:
	b.add(L, src[s:])
	L.Push(b.result())
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue appends the replacement of the match [s, e) (Lua 5.1's add_value).
func (v *vm) gsubValue(L *lua.LState, b *buf, src string, s, e int, repl lua.LValue) {
	var val lua.LValue
	switch r := repl.(type) {
	case lua.LNumber, lua.LString:
		v.gsubString(L, b, src, s, e, lua.LVAsString(r))
		return
	case *lua.LTable:
		base := L.GetTop()
		v.pushCaptures(L, src, s, e, true, "gsub")
		key := L.Get(base + 1)
		L.SetTop(base)
		val = L.GetTable(r, key)
	case *lua.LFunction:
		base := L.GetTop()
		L.Push(r)
		n := v.pushCaptures(L, src, s, e, true, "gsub")
		L.Call(n, 1)
		val = L.Get(-1)
		L.SetTop(base)
	}
	switch x := val.(type) {
	case *lua.LNilType:
		b.add(L, src[s:e])
	case lua.LBool:
		if !bool(x) {
			b.add(L, src[s:e])
			return
		}
		L.RaiseError("invalid replacement value (a boolean)")
	case lua.LString:
		b.add(L, string(x))
	case lua.LNumber:
		b.add(L, x.String())
	default:
		L.RaiseError("invalid replacement value (a %s)", val.Type().String())
	}
}

func (v *vm) gsubString(L *lua.LState, b *buf, src string, s, e int, r string) {
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c != '%' || i+1 == len(r) {
			b.addByte(L, c)
			continue
		}
		i++
		c = r[i]
		switch {
		case c < '0' || c > '9':
			b.addByte(L, c)
		case c == '0':
			b.add(L, src[s:e])
		default:
			capt, err := v.pm.Capture(int(c-'1'), s, e)
			if err != nil {
				v.patternError(L, "gsub", err)
			}
			if capt.Pos > 0 {
				b.add(L, strconv.Itoa(capt.Pos))
			} else {
				b.add(L, src[capt.Start:capt.End])
			}
		}
	}
}

// strRep is string.rep, its result bounded by MaxStringLen.
func (v *vm) strRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if maxLen := v.rt.cfg.limits.MaxStringLen; n > maxLen/len(s) {
		L.RaiseError("string.rep: result longer than %d bytes (limit)", maxLen)
	}
	v.charge(L, "string.rep", n*len(s))
	L.Push(lua.LString(strings.Repeat(s, n)))
	return 1
}

// strByte is string.byte, refusing more results than the value stack can hold
// before pushing any.
func (v *vm) strByte(L *lua.LState) int {
	s := L.CheckString(1)
	i := posrelat(L.OptInt(2, 1), len(s))
	j := posrelat(L.OptInt(3, i), len(s))
	i = max(i, 1)
	j = min(j, len(s))
	if i > j {
		return 0
	}
	n := j - i + 1
	if L.GetTop()+n > v.rt.cfg.limits.RegistryMaxSize {
		L.RaiseError("string.byte: %d results, more than the value stack holds (limit)", n)
	}
	for k := i - 1; k < j; k++ {
		L.Push(lua.LNumber(s[k]))
	}
	return n
}

// strChar is string.char (its arguments are already bounded by the value stack).
func (v *vm) strChar(L *lua.LState) int {
	top := L.GetTop()
	v.charge(L, "string.char", top)
	b := make([]byte, top)
	for i := 1; i <= top; i++ {
		c := L.CheckInt(i)
		if c < 0 || c > 255 {
			L.ArgError(i, "invalid value")
		}
		b[i-1] = byte(c)
	}
	L.Push(lua.LString(b))
	return 1
}
