package luabind_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind"
)

func quiet() luabind.Option {
	return luabind.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func newRT(t *testing.T, code string, opts ...luabind.Option) *luabind.Runtime {
	t.Helper()
	rt, err := luabind.New(luabind.FromString("s.lua", code), append([]luabind.Option{quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestAbuse(t *testing.T) {
	tests := []struct {
		name   string
		body   string // the body of on_request(req)
		reason luabind.Reason
		want   string // a substring of the error
	}{
		{"infinite loop", `while true do end`, luabind.ReasonTimeout, "time budget"},
		{"infinite loop in pcall", `while true do pcall(function() while true do end end) end`, luabind.ReasonTimeout, "time budget"},
		{"deep recursion", `local function f(n) return 1 + f(n + 1) end return f(1)`, luabind.ReasonLimit, "overflow"},
		{"string.rep bomb", `local s = string.rep("x", 1e9)`, luabind.ReasonLimit, "string.rep"},
		{"method rep bomb", `local s = ("x"):rep(1e9)`, luabind.ReasonLimit, "string.rep"},
		{"format width bomb", `local s = string.format("%999999d", 1)`, luabind.ReasonError, "width or precision"},
		{"gsub bomb", `local s = string.rep("x", 1000):gsub("", string.rep("y", 2000))`, luabind.ReasonLimit, "string.gsub"},
		{"concat bomb", `local t = {} for i = 1, 2000 do t[i] = string.rep("x", 1000) end local s = table.concat(t)`, luabind.ReasonLimit, "table.concat"},
		{"string doubling", `local s = "x" while true do s = s .. s end`, luabind.ReasonTimeout, "time budget"},
		{"table grown in a loop", `local t, i = {}, 0 while true do i = i + 1 t[i] = i end`, luabind.ReasonTimeout, "time budget"},
		{"unpack of a huge table", `local t = {} for i = 1, 70000 do t[i] = i end return unpack(t)`, luabind.ReasonLimit, "overflow"},
		{"os.execute", `os.execute("true")`, luabind.ReasonError, "non-table object(nil)"},
		{"io.open", `io.open("/etc/passwd")`, luabind.ReasonError, "non-table object(nil)"},
		{"require os", `require("os")`, luabind.ReasonError, "not found"},
		{"require io", `require("io")`, luabind.ReasonError, "not found"},
		{"load", `load("return 1")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"loadstring", `loadstring("return 1")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"dofile", `dofile("/etc/passwd")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"loadfile", `loadfile("/etc/passwd")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"string.dump", `local b = string.dump(function() end)`, luabind.ReasonError, "attempt to call a non-function object"},
		{"bytecode", `local f = loadstring("\27Lua")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"debug", `debug.getinfo(1)`, luabind.ReasonError, "non-table object(nil)"},
		{"getfenv", `getfenv(0).x = 1`, luabind.ReasonError, "attempt to call a non-function object"},
		{"setfenv", `setfenv(1, {})`, luabind.ReasonError, "attempt to call a non-function object"},
		{"coroutine", `coroutine.create(function() end)`, luabind.ReasonError, "non-table object(nil)"},
		{"package", `package.loadlib("x", "y")`, luabind.ReasonError, "non-table object(nil)"},
		{"collectgarbage", `collectgarbage("stop")`, luabind.ReasonError, "attempt to call a non-function object"},
		{"math.randomseed", `math.randomseed(1)`, luabind.ReasonError, "attempt to call a non-function object"},
		{"setmetatable on req", `setmetatable(req, {})`, luabind.ReasonError, "protected"},
		{"rawset on req", `rawset(req, "path", "/x")`, luabind.ReasonError, "protected"},
		{"write to req", `req.path = "/x"`, luabind.ReasonError, "read-only"},
		{"new field on req", `req.foo = 1`, luabind.ReasonError, "read-only"},
		{"rawset on _G", `rawset(_G, "x", 1)`, luabind.ReasonError, "protected"},
		{"setmetatable on _G", `setmetatable(_G, nil)`, luabind.ReasonError, "protected"},
		{"new global", `leaked = true`, luabind.ReasonError, "read-only in hooks"},
		{"reassign a global", `loaded = 2`, luabind.ReasonError, "read-only in hooks"},
		{"_G write", `_G.x = 1`, luabind.ReasonError, "read-only in hooks"},
		{"error()", `error("boom")`, luabind.ReasonError, "boom"},
		{"error with a table", `error({})`, luabind.ReasonError, "table"},
		{"bad return", `return 42`, luabind.ReasonBadReturn, "want nil or a table"},
		{"unknown field", `return { stauts = 429 }`, luabind.ReasonBadReturn, "unknown field"},
		{"bad status", `return { status = 200 }`, luabind.ReasonBadReturn, "status"},
		{"header injection", `return { headers = { ["X-A"] = "a\r\nSet-Cookie: x" } }`, luabind.ReasonBadReturn, "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := "loaded = 1\nfunction on_request(req)\n" + tt.body + "\nend\n"
			// Cases that must hit a limit other than time get a budget no noisy machine
			// overruns; the time-bounded cases get a short one.
			budget := 5 * time.Second
			if tt.reason == luabind.ReasonTimeout {
				budget = 20 * time.Millisecond
			}
			rt := newRT(t, code, luabind.WithLimits(luabind.Limits{RequestBudget: budget}))
			for i := range 2 { // the second call runs on a fresh VM
				d, err := rt.OnRequest(context.Background(), &luabind.Request{Path: "/"})
				if err == nil {
					t.Fatalf("call %d: no error", i)
				}
				if d.Reject {
					t.Errorf("call %d: fail-open rejected the request: %+v", i, d)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("call %d: error %q does not mention %q", i, err, tt.want)
				}
			}
			st := rt.Stats()
			if got := st.Failures[luabind.FailureKey{Hook: luabind.HookRequest, Reason: tt.reason}]; got != 2 {
				t.Errorf("failures %v, want 2 with reason %s", st.Failures, tt.reason)
			}
			if tt.reason != luabind.ReasonBadReturn && st.VMsDiscarded < 2 {
				t.Errorf("discarded %d VMs, want the 2 that failed", st.VMsDiscarded)
			}
		})
	}
}

func TestAbuseGlobalsDoNotLeakBetweenRequests(t *testing.T) {
	// A pool of one VM: every request runs on the same VM unless it is discarded.
	rt := newRT(t, `
n = 0
function on_request(req)
  if req.path == "/write" then
    leaked = "yes"
  end
  if req.path == "/count" then
    n = n + 1
  end
  if leaked ~= nil or n ~= 0 then
    return { status = 500 }
  end
end`, luabind.WithLimits(luabind.Limits{PoolSize: 1}))
	ctx := context.Background()
	for _, path := range []string{"/write", "/count"} {
		_, err := rt.OnRequest(ctx, &luabind.Request{Path: path})
		if err == nil || !strings.Contains(err.Error(), "read-only in hooks") {
			t.Fatalf("%s: err = %v, want a read-only global error", path, err)
		}
		d, err := rt.OnRequest(ctx, &luabind.Request{Path: "/read"})
		if err != nil || d.Reject {
			t.Fatalf("after %s the next request saw the write: %+v, %v", path, d, err)
		}
	}
}

func TestAbuseErrorEveryCall(t *testing.T) {
	rt := newRT(t, `function on_request(req) error("always") end`)
	ctx := context.Background()
	req := &luabind.Request{Path: "/"}
	failed := 0
	for range 10_000 {
		d, err := rt.OnRequest(ctx, req)
		if d.Reject {
			failed++
		}
		// A wall-clock budget can also fire on a saturated machine; either way the
		// request must proceed.
		if !errors.Is(err, luabind.ErrScript) && !errors.Is(err, luabind.ErrScriptTimeout) {
			t.Fatalf("err = %v, want ErrScript", err)
		}
	}
	if failed != 0 {
		t.Errorf("%d of 10000 requests failed with fail-open", failed)
	}
	if got := rt.Stats().Total(luabind.HookRequest); got != 10_000 {
		t.Errorf("counted %d failures, want 10000", got)
	}
}
