package luabind_test

import (
	"context"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind"
)

// FuzzScript compiles fuzzed source as the body of on_request and runs it with a
// 10 ms budget: whatever the script does, New and OnRequest return (a compile error,
// a script error, a limit or a time-out), within the budget plus the machine's
// scheduling slack, without a panic; goleak (TestMain) checks that no goroutine is
// left behind.
func FuzzScript(f *testing.F) {
	for _, s := range []string{
		`return nil`,
		`return { status = 429, retry_after = 1 }`,
		`while true do end`,
		`local s = "x" while true do s = s .. s end`,
		`string.find(string.rep("a", 4096), ".-.-.-.-x")`,
		`return (req.path:match("^%s*(.-)%s*$"))`,
		`string.gsub(string.rep("a", 65536), ".", "")`,
		`string.format(string.rep("%[1]s", 300), string.rep("x", 1048576))`,
		`local t = {} for i = 1, 1e6 do t[i] = i end table.sort(t, function(a, b) return a > b end)`,
		`unpack({}, 1, 1e9)`,
		`string.rep("x", 1e9)`,
		`for k, v in ("a=1,b=2"):gmatch("(%w+)=(%w+)") do end`,
		`string.rep = nil`,
		`getmetatable("").__index.rep = nil`,
		`return { headers = { ["X-A"] = string.rep("y", 100) } }`,
		`local function f(n) return f(n + 1) + 1 end return f(1)`,
		`error(setmetatable({}, {__tostring = function() while true do end end}))`,
		`return string.format("%5.2f %d %s %q", 1.5, 3, "x", "y")`,
		`observe("x", "y", 1)`,
	} {
		f.Add(s)
	}
	const budget = 10 * time.Millisecond
	lim := luabind.Limits{RequestBudget: budget, LoadBudget: budget, PoolSize: 1}
	f.Fuzz(func(t *testing.T, body string) {
		start := time.Now()
		rt, err := luabind.New(luabind.FromString("fuzz.lua", "function on_request(req)\n"+body+"\nend"),
			quiet(), luabind.WithLimits(lim))
		if err != nil {
			return
		}
		defer rt.Close()
		for range 2 {
			d, err := rt.OnRequest(context.Background(), &luabind.Request{Method: "GET", Path: "/fuzz", Tenant: "t"})
			if err != nil && d.Reject {
				t.Fatalf("fail-open rejected the request: %v", err)
			}
		}
		// Compile, load and two calls, each bounded by 10 ms of budget: a hang is a
		// call that never returns. Five seconds is the stall a shared, saturated
		// machine (load 17 on 2 cores) showed between two instructions, not a budget;
		// TestLibraryWorkIsBounded holds the calls to budget + 20 ms.
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("took %v", took)
		}
	})
}
