-- Tests for kpa.lua: Knative's published cases. The host sets config = {target_value = 1,
-- target_utilization = 1, panic_threshold = 2, max_scale_up_rate = 10,
-- max_scale_down_rate = 10} (see autoscale's policies_lua_test.go).

function TestPanicBegins()
  -- 10 ready, stable average 11, panic average 25 → 25, and panic begins.
  local m = fixture{
    targets = { svc = { replicas = 10, max = 100 } },
    routes = { svc = { concurrency = 11, by_span = { [6] = { concurrency = 25 } } } },
  }
  local state = {}
  assert_action(decide(m, state), "scale", { target = "svc", replicas = 25, panic = true })
  assert_eq(state.svc.panic_time, clock.now())
end

function TestStableThenDownOutOfPanic()
  -- target 10, 8 ready: stable 100 → 10; then stable 50 → 5 once out of panic.
  local p = kpa_params{ target_value = 10, target_utilization = 1, panic_threshold = 2,
    max_scale_up_rate = 10, max_scale_down_rate = 10 }
  local st = {}
  local n, panicking = kpa_scale(p, st, 0, 8, 100, 100)
  assert_eq(n, 10)
  assert_eq(panicking, false)
  n, panicking = kpa_scale(p, st, 1, 10, 50, 50)
  assert_eq(n, 5)
  assert_eq(panicking, false)
end

local anchor = { target_value = 1, target_utilization = 1, panic_threshold = 2,
  max_scale_up_rate = 10, max_scale_down_rate = 10 }

function TestNoScaleDownInPanicAndUnpanicAfterStableWindow()
  local p = kpa_params(anchor)
  local st = {}
  local n, panicking = kpa_scale(p, st, 0, 8, 10, 20)
  assert_eq(n, 20)
  assert_eq(panicking, true)
  n, panicking = kpa_scale(p, st, 10, 20, 5, 5)
  assert_eq(n, 20)
  assert_eq(panicking, true)
  n, panicking = kpa_scale(p, st, 61, 20, 5, 5)
  assert_eq(n, 5)
  assert_eq(panicking, false)
end

function TestScaleToZeroAfterGrace()
  local p = kpa_params{ target_value = 1, target_utilization = 1, max_scale_down_rate = 2 }
  local st = {}
  assert_eq(kpa_scale(p, st, 0, 1, 1, 1), 1)
  assert_eq(kpa_scale(p, st, 10, 1, 0, 0), 1)
  assert_eq(kpa_scale(p, st, 29, 1, 0, 0), 1)
  assert_eq(kpa_scale(p, st, 31, 1, 0, 0), 0)
  assert_eq(kpa_scale(p, st, 40, 0, 0, 0), 0)
end
