package luabind_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind"
)

// eval runs expr (a Lua expression list) in on_request and returns its values
// joined by "," with tostring, or the call's error.
func eval(t *testing.T, expr string, opts ...luabind.Option) (string, error) {
	t.Helper()
	code := `function on_request(req)
  local r = table.pack and table.pack(` + expr + `) or {n = select("#", ` + expr + `), ` + expr + `}
  local out = {}
  for i = 1, r.n do out[i] = tostring(r[i]) end
  return { status = 418, body = table.concat(out, ",") }
end`
	rt := newRT(t, code, opts...)
	d, err := rt.OnRequest(context.Background(), &luabind.Request{Path: "/"})
	return d.Body, err
}

func TestStringLibrary(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`string.find("hello world", "o w")`, "5,7"},
		{`string.find("hello", "l")`, "3,3"},
		{`string.find("hello", "xyz")`, "nil"},
		{`string.find("a.b", ".", 1, true)`, "2,2"},
		{`string.find("a.b", "%.")`, "2,2"},
		{`string.find("hello", "(l)(l)")`, "3,4,l,l"},
		{`string.find("hello", "()ll()")`, "3,4,3,5"},
		{`string.find("hello", "l", -2)`, "4,4"},
		{`string.find("hello", "")`, "1,0"},
		{`string.find("hello", "", 10)`, "6,5"},
		{`string.find("hello", "^e")`, "nil"},
		{`string.find("hello", "^h")`, "1,1"},
		{`string.find("hello", "o$")`, "5,5"},
		{`string.find("a$b", "$b")`, "2,3"},
		{`string.match("  trim me  ", "^%s*(.-)%s*$")`, "trim me"},
		{`string.match("key=val", "(%w+)=(%w+)")`, "key,val"},
		{`string.match("hello", ".-")`, ""},
		{`string.match("2024-01-02", "(%d+)-(%d+)-(%d+)")`, "2024,01,02"},
		{`string.match("THE (quick) fox", "%((%a+)%)")`, "quick"},
		{`string.match("f(a(b)c)d", "%b()")`, "(a(b)c)"},
		{`string.match("THE (quick) fox", "%f[%a]%a+", 5)`, "quick"},
		{`string.match("hello", "(l)%1")`, "l"},
		{`string.match("hello", "(h)(e)%2")`, "nil"},
		{`string.match("x = 10", "^(%a+)%s*=%s*(%d+)$")`, "x,10"},
		{`string.match("abc123", "[%a]+")`, "abc"},
		{`string.match("abc123", "[^%a]+")`, "123"},
		{`string.match("a-b", "[a%-]+")`, "a-"},
		{`string.match("]]x", "[]]+")`, "]]"},
		{`string.match("hex: 0xFF", "0x(%x+)")`, "FF"},
		{`string.match("aaa", "a-b")`, "nil"},
		{`string.match("aaab", "a-b")`, "aaab"},
		{`string.match("ab", "a?b")`, "ab"},
		{`string.match("b", "a?b")`, "b"},
		{`string.match("hello", "()")`, "1"},
		{`("x"):rep(3)`, "xxx"},
		{`string.gsub("hello world", "o", "0")`, "hell0 w0rld,2"},
		{`string.gsub("hello", "", "-")`, "-h-e-l-l-o-,6"},
		{`string.gsub("abc", "%w", "%0%0")`, "aabbcc,3"},
		{`string.gsub("hello world", "(%w+)", "<%1>")`, "<hello> <world>,2"},
		{`string.gsub("abc", "b", "%%")`, "a%c,1"},
		{`string.gsub("$name is $age", "%$(%w+)", {name = "bob", age = 3})`, "bob is 3,2"},
		{`string.gsub("abc", "%w", function(c) if c == "b" then return "B" end end)`, "aBc,3"},
		{`string.gsub("abc", "%w", function(c) return false end)`, "abc,3"},
		{`string.gsub("hello", "l", "L", 1)`, "heLlo,1"},
		{`string.gsub("hello", "^h", "H")`, "Hello,1"},
		{`string.gsub("hello", "^l", "L")`, "hello,0"},
		{`string.gsub("abc", ".", {a = 1})`, "1bc,3"},
		{`string.gsub("a b", "()", "%1")`, "1a2 3b4,4"},
		{`select("#", string.gsub("", "x", "y"))`, "2"},
		{`(function() local t = {} for w in ("one two three"):gmatch("%a+") do t[#t+1] = w end return table.concat(t, "|") end)()`, "one|two|three"},
		{`(function() local t = {} for k, v in ("a=1, b=2"):gmatch("(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, "|") end)()`, "a1|b2"},
		{`(function() local n = 0 for _ in ("ab"):gmatch("") do n = n + 1 end return n end)()`, "3"},
		{`string.format("%d %5.2f %s %q %x %X %o %%", 42, 3.14159, "hi", 'a"b\n', 255, 255, 8)`, "42  3.14 hi \"a\\\"b\\\n\" ff FF 10 %"},
		{`string.format("%5s|%-5s|%.1s|%5.1s|", "ab", "cd", "xyz", "xyz")`, "   ab|cd   |x|    x|"},
		{`string.format("%g %g %g %g", 1e20, 0.1, 100000, 1000000)`, "1e+20 0.1 100000 1e+06"},
		{`string.format("%c%c", 72, 105)`, "Hi"},
		{`string.format("%03d|%-3d|%+d|% d", 7, 7, 7, 7)`, "007|7  |+7| 7"},
		{`string.format("%d", 3.9)`, "3"},
		{`string.format("%d", -3.9)`, "-3"},
		{`string.format("%5.1f", -2.25)`, " -2.2"},
		{`string.format("%e", 12345.678)`, "1.234568e+04"},
		{`string.format("%s %s", 1, true)`, "1 true"},
		{`string.format("%i", 12)`, "12"},
		{`string.format("%u", 12)`, "12"},
		{`string.byte("ABC", 1, -1)`, "65,66,67"},
		{`string.byte("ABC")`, "65"},
		{`select("#", string.byte("ABC", 10))`, "0"},
		{`string.char(72, 105)`, "Hi"},
		{`string.char()`, ""},
		{`table.concat({1, "a", 2.5}, "-")`, "1-a-2.5"},
		{`table.concat({1, 2, 3, 4}, ",", 2, 3)`, "2,3"},
		{`table.concat({}, ",")`, ""},
		{`(function() local t = {3, 1, 2} table.sort(t) return table.concat(t, ",") end)()`, "1,2,3"},
		{`(function() local t = {3, 1, 2} table.sort(t, function(a, b) return a > b end) return table.concat(t, ",") end)()`, "3,2,1"},
		{`(function() local t = {"b", "a", "c"} table.sort(t) return table.concat(t, ",") end)()`, "a,b,c"},
		{`unpack({1, 2, 3})`, "1,2,3"},
		{`unpack({1, 2, 3}, 2)`, "2,3"},
		{`select("#", unpack({1, 2, 3}, 3, 2))`, "0"},
		{`unpack({1}, 1, 3)`, "1,nil,nil"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := eval(t, tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStringLibraryErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`string.find("a", "[a")`, "missing ']'"},
		{`string.find("a", "%")`, "ends with '%'"},
		{`string.match("a", "(a")`, "unfinished capture"},
		{`string.match("a", "a)")`, "invalid pattern capture"},
		{`string.gsub("a", "a", "%2")`, "invalid capture index"},
		{`string.match("a", "%1")`, "invalid capture index"},
		{`string.match("a", "%b")`, "missing arguments"},
		{`string.match("a", "%fa")`, "missing '['"},
		{`string.match("a", string.rep("(", 33) .. "a" .. string.rep(")", 33))`, "too many captures"},
		{`string.match(string.rep("a", 300), string.rep("a?", 300))`, "pattern too complex"},
		{`string.gsub("a", "a", true)`, "string/function/table expected"},
		{`string.gsub("a", "a", function() return {} end)`, "invalid replacement value (a table)"},
		{`string.format("%[1]s", "x")`, "invalid option '%['"},
		{`string.format("%v", 1)`, "invalid option '%v'"},
		{`string.format("%100d", 1)`, "width or precision too long"},
		{`string.format("%.100f", 1)`, "width or precision too long"},
		{`string.format("%------d", 1)`, "repeated flags"},
		{`string.format("%d")`, "number expected"},
		{`string.format("%")`, "invalid option"},
		{`string.char(256)`, "invalid value"},
		{`table.concat({{}})`, "invalid value (at index 1)"},
		{`table.sort({1, "a"})`, "attempt to compare"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := eval(t, tt.expr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// fastestStep returns the fastest of three on_request calls running body once.
func fastestStep(t *testing.T, body string) time.Duration {
	t.Helper()
	rt := newRT(t, "function on_request(req)\n"+body+"\nend", luabind.WithLimits(luabind.Limits{RequestBudget: 5 * time.Second}))
	best := time.Hour
	for range 3 {
		start := time.Now()
		if _, err := rt.OnRequest(context.Background(), &luabind.Request{Path: "/"}); err != nil {
			t.Fatalf("the step %q failed: %v", body, err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// TestLibraryWorkIsBounded runs, for each Go-side library function that can do
// unbounded work or build unbounded results on script input, a call that would
// run for seconds or build hundreds of MB, and checks that it ends within the
// request budget plus 20 ms with the reason its bound gives. A case whose loop body
// holds one uninterruptible Go call that itself takes milliseconds (step) may end
// that call late: its slack is twice that step's fastest time, measured in the same
// run, when that is more than 20 ms (under -race on a loaded machine).
func TestLibraryWorkIsBounded(t *testing.T) {
	const budget = 30 * time.Millisecond
	// MaxStringLen is 64 KiB here (a 1 MiB default behaves the same, 16 times
	// slower under -race); big is a string of that length.
	const maxLen = 1 << 16
	big := `string.rep("x", 65536)`
	tests := []struct {
		name, body string
		reason     luabind.Reason
	}{
		// Backtracking patterns: several .- or .* before a missing literal.
		{"find backtracking", `string.find(string.rep("a", 4096), ".-.-.-.-x")`, luabind.ReasonTimeout},
		{"match backtracking", `string.match(string.rep("a", 4096), "(.*)(.*)(.*)x")`, luabind.ReasonTimeout},
		{"gmatch backtracking", `for _ in string.gmatch(string.rep("a", 4096), ".-.-.-x") do end`, luabind.ReasonTimeout},
		{"gsub backtracking", `string.gsub(string.rep("a", 4096), ".-.-.-x", "")`, luabind.ReasonTimeout},
		{"trim of a 64 KiB header", `string.match(string.rep(" ", 65536) .. "x" .. string.rep(" ", 65536) .. "y", "^%s*(.-)%s*$")`, luabind.ReasonTimeout},
		{"balance over a long subject", `for i = 1, 1e9 do string.find(string.rep("(", 65536), "%b()") end`, luabind.ReasonTimeout},
		{"pcall around a backtracking find", `while true do pcall(string.find, string.rep("a", 4096), ".-.-.-x") end`, luabind.ReasonTimeout},
		// Results bounded by MaxStringLen before they are built.
		{"format of two strings of MaxStringLen", `local s = ` + big + ` string.format("%s%s", s, s)`, luabind.ReasonLimit},
		{"format argument index", `string.format(string.rep("%[1]s", 300), ` + big + `)`, luabind.ReasonError},
		{"format %q of MaxStringLen", `string.format("%q", ` + big + `)`, luabind.ReasonLimit},
		{"format of many short pieces", `string.format(string.rep("%99d", 2000), unpack((function() local t = {} for i = 1, 2000 do t[i] = i end return t end)()))`, luabind.ReasonLimit},
		{"gsub table replacement of MaxStringLen values", `local s = ` + big + ` string.gsub(string.rep("a", 100), "a", {a = s})`, luabind.ReasonLimit},
		{"gsub function replacement of MaxStringLen values", `local s = ` + big + ` string.gsub(string.rep("a", 100), "a", function() return s end)`, luabind.ReasonLimit},
		{"gsub string replacement", `string.gsub(string.rep("x", 100), "", string.rep("y", 2000))`, luabind.ReasonLimit},
		{"gsub %0 doubling", `string.gsub(` + big + `, ".", "%0%0")`, luabind.ReasonLimit},
		{"rep", `string.rep("x", 1e9)`, luabind.ReasonLimit},
		{"rep in a loop (MaxCallBytes)", `local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 65536) end`, luabind.ReasonLimit},
		{"upper of a string grown past MaxStringLen", `local s = ` + big + ` s = s .. s s:upper()`, luabind.ReasonLimit},
		{"lower of a string grown past MaxStringLen", `local s = ` + big + ` s = s .. s string.lower(s)`, luabind.ReasonLimit},
		{"reverse of a string grown past MaxStringLen", `local s = ` + big + ` s = s .. s s:reverse()`, luabind.ReasonLimit},
		{"upper in a loop (MaxCallBytes)", `local s, t = ` + big + `, {} for i = 1, 1e9 do t[i] = s:upper() end`, luabind.ReasonLimit},
		{"concat", `local t = {} for i = 1, 200 do t[i] = string.rep("x", 1000) end table.concat(t)`, luabind.ReasonLimit},
		{"concat with a long separator", `local t = {} for i = 1, 2000 do t[i] = i end table.concat(t, string.rep("x", 1000))`, luabind.ReasonLimit},
		// Ranges bounded by the value stack before anything is pushed.
		{"byte of 128 KiB", `local s = ` + big + ` string.byte(s .. s, 1, -1)`, luabind.ReasonLimit},
		{"unpack of a huge range", `unpack({}, 1, 1e8)`, luabind.ReasonLimit},
		{"unpack of the full int range", `unpack({}, -2^62, 2^62)`, luabind.ReasonLimit},
		// Work bounded by the budget, checked inside the Go call.
		{"sort of a large table", `local t = {} for i = 1, 200000 do t[i] = (i * 7919) % 200003 end while true do table.sort(t) end`, luabind.ReasonTimeout},
		{"sort with a slow comparator", `local t = {} for i = 1, 10000 do t[i] = i end table.sort(t, function(a, b) for i = 1, 1000 do end return a < b end)`, luabind.ReasonTimeout},
		{"stores far past a table's end, repeated", `while true do local t = {} t[67108863] = 1 t[65535] = 1 table.insert(t, 60000, 1) end`, luabind.ReasonTimeout},
		{"gsub function replacement looping", `string.gsub(string.rep("a", 100), "a", function() while true do end end)`, luabind.ReasonTimeout},
		{"gsub of empty matches over MaxStringLen, repeated", `local s = ` + big + ` while true do s:gsub("", "") end`, luabind.ReasonTimeout},
		{"tostring of a big table, repeated", `local t = {} for i = 1, 100000 do t[i] = i end while true do tostring(t) end`, luabind.ReasonTimeout},
	}
	// steps holds, by case, its loop body's slowest uninterruptible call, run once.
	steps := map[string]string{
		"stores far past a table's end, repeated": `local t = {} t[65535] = 1`,
	}
	unused := maps.Clone(steps)
	for _, tt := range tests {
		delete(unused, tt.name)
	}
	if len(unused) > 0 {
		t.Fatalf("steps name no case: %v", unused)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A limit must stop the call long before a generous budget; a time-out
			// must stop it within the short one.
			b := budget
			if tt.reason != luabind.ReasonTimeout {
				b = 5 * time.Second
			}
			rt := newRT(t, "function on_request(req)\n"+tt.body+"\nend", luabind.WithLimits(luabind.Limits{RequestBudget: b, MaxStringLen: maxLen}))
			// The machine is shared: a call descheduled past its budget is noise, a
			// call that runs on is not. Every call must end within b + 500 ms, the
			// fastest of three within b + 20 ms; a limit within a second.
			best := time.Hour
			for i := range 3 {
				start := time.Now()
				_, err := rt.OnRequest(context.Background(), &luabind.Request{Path: "/"})
				took := time.Since(start)
				if err == nil {
					t.Fatalf("call %d: no error", i)
				}
				if took > b+500*time.Millisecond {
					t.Errorf("call %d took %v: it ran on past its budget %v (%v)", i, took, b, err)
				}
				best = min(best, took)
			}
			slack := 20 * time.Millisecond
			if step, ok := steps[tt.name]; ok {
				slack = max(slack, 2*fastestStep(t, step))
			}
			if tt.reason == luabind.ReasonTimeout && best > b+slack {
				t.Errorf("the fastest of 3 calls took %v, more than the budget %v + %v", best, b, slack)
			}
			if tt.reason != luabind.ReasonTimeout && best > time.Second {
				t.Errorf("the fastest of 3 calls took %v to hit its limit", best)
			}
			st := rt.Stats()
			if got := st.Failures[luabind.FailureKey{Hook: luabind.HookRequest, Reason: tt.reason}]; got != 3 {
				t.Errorf("failures %v, want 3 with reason %s", st.Failures, tt.reason)
			}
		})
	}
}

// TestLibraryTablesAreFrozen checks that a request cannot change the string, table
// and math libraries or the string metatable for later requests on the same VM,
// while the main chunk still may extend them.
func TestLibraryTablesAreFrozen(t *testing.T) {
	rt := newRT(t, `
function string.trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
function on_request(req)
  if req.path == "/check" then
    if string.rep ~= orig_rep or ("x"):rep(2) ~= "xx" or math.floor(1.5) ~= 1 or table.concat({1}) ~= "1" or string.trim(" a ") ~= "a" then
      return { status = 500 }
    end
    return
  end
  local attacks = {
    function() string.rep = function() return "pwned" end end,
    function() string.extra = 1 end,
    function() table.insert = nil end,
    function() math.floor = nil end,
    function() rawset(string, "rep", nil) end,
    function() setmetatable(string, nil) end,
    function() getmetatable("").__index = {} end,
    function() getmetatable("").__index.rep = nil end,
    function() setmetatable("", {}) end,
  }
  -- Each attack runs in pcall, so the call succeeds and its VM is kept for the
  -- next request.
  if pcall(attacks[tonumber(req.path:sub(2))]) then
    return { status = 500 }
  end
end
orig_rep = string.rep`, luabind.WithLimits(luabind.Limits{PoolSize: 1}))
	ctx := context.Background()
	for i := 1; i <= 9; i++ {
		d, err := rt.OnRequest(ctx, &luabind.Request{Path: "/" + string(rune('0'+i))})
		if err != nil || d.Reject {
			t.Errorf("attack %d did not raise: %+v, %v", i, d, err)
		}
		d, err = rt.OnRequest(ctx, &luabind.Request{Path: "/check"})
		if err != nil || d.Reject {
			t.Fatalf("after attack %d a later request saw a changed library: %+v, %v", i, d, err)
		}
	}
	if st := rt.Stats(); st.VMsCreated != 1 {
		t.Errorf("VMs created %d, want 1: every request must have run on the same VM", st.VMsCreated)
	}
}

// TestHarmlessPatternsAreFast: what gopher-lua's matcher made slow enough to stall a
// gateway (a textbook trim of a 4 KB header, ~2.5 s; gsub(s, ".", "") on 64 KiB,
// 4.2 s, quadratic) completes in a few ms (about 3 ms here; 60 ms under -race, whence
// the 500 ms budget).
func TestHarmlessPatternsAreFast(t *testing.T) {
	rt := newRT(t, `
function on_request(req)
  local ua = req:header("User-Agent")
  local trimmed = ua:match("^%s*(.-)%s*$")
  local stripped = string.gsub(string.rep("x", 65536), ".", "")
  if #trimmed < 4000 or trimmed:find("^%s") or trimmed:find("%s$") or stripped ~= "" then return { status = 500 } end
end`, luabind.WithLimits(luabind.Limits{RequestBudget: 500 * time.Millisecond}))
	ua := " " + strings.Repeat("Mozilla/5.0 (X11; Linux x86_64) ", 4096/32) + " "
	for i := range 3 {
		d, err := rt.OnRequest(context.Background(), &luabind.Request{Header: map[string][]string{"User-Agent": {ua}}})
		if err != nil || d.Reject {
			t.Fatalf("call %d: %+v, %v", i, d, err)
		}
	}
}
