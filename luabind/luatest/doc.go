// Package luatest runs the Lua unit tests of a luabind script as Go subtests: every
// global function whose name starts with "Test" in a *_test.lua file becomes one
// t.Run, in a fresh sandboxed VM that has loaded the script, the test file and the
// test helpers.
//
// The helpers a test file sees (documented with the rest of the Lua API in
// luabind/REFERENCE.md):
//
//	fixture{now=, tick=, targets={name={replicas=, desired=, min=, max=}},
//	        routes={[key]={rps=, p99=, ..., by_span={[6]={...}}}},
//	        tenants=, backends=, models=, scopes={custom={[key]={...}}}}  -> m
//	decide(m[, state])           -> list of actions, run through Go's validation; an
//	                                action the loop would refuse fails the test
//	decide_refused(m[, state])   -> actions, refused ({action=, reason=}): to expect one
//	request{method=, path=, headers={}, query="a=1", tenant=, ...}    -> req view
//	backends{{id=, in_flight=, ewma=, p99=, error_rate=, weight=, healthy=, labels={},
//	          queue=, kv_cache=, load_age=}} -> list
//	response{status=, latency=, bytes=, values={}}                   -> res view
//	assert_eq(got, want[, msg])  deep equality of tables, actions by value
//	assert_near(got, want[, eps[, msg]])
//	assert_action(actions, kind[, fields[, msg]]) -> the matching action
//	assert_no_action(actions, kind[, fields[, msg]])
//	clock.now(), clock.set(unix_seconds), clock.advance(seconds)  (reset to StartUnix per test)
//
// The assertions fail, with the reason, on an action the loop would refuse (a scale for
// a target none of the test's fixtures has); a misspelt snapshot field, view field or
// scope raises in the script and fails the test too.
//
// A Go test runs a script's Lua tests with one line:
//
//	func TestPolicy(t *testing.T) {
//		luatest.Run(t, os.DirFS("testdata"), "policy.lua", "policy_test.lua",
//			luabind.WithConfig(map[string]any{"target": "web"}))
//	}
package luatest
