-- Tests for kpa.lua: Knative's decider tests (knative.dev/serving
-- pkg/autoscaler/scaling/autoscaler_test.go) as data, the same cases as the Go twin's
-- kpa_test.go. The host sets config = {target_value = 1, target_utilization = 1,
-- panic_threshold = 2, max_scale_up_rate = 10, max_scale_down_rate = 10} (see
-- autoscale's policies_lua_test.go).

-- upstream is the decider upstream's tests build: a target value tv per pod at 75%
-- utilisation, target burst capacity tbc, panic threshold 2, rates 10, 60 s stable.
local function upstream(tv, tbc, extra)
  local c = { target_value = tv / 0.75, target_utilization = 0.75, target_burst_capacity = tbc,
    panic_threshold = 2, max_scale_up_rate = 10, max_scale_down_rate = 10, stable_window = 60 }
  for k, v in pairs(extra or {}) do
    c[k] = v
  end
  return kpa_params(c)
end

-- ebc is upstream's expectedEBC.
local function ebc(tv, tbc, panic, pods)
  return math.floor(tv / 0.75 * pods - tbc - panic)
end

-- run plays steps {at, ready, stable, panic, want, ebc, unreachable, invalid, panicking}
-- on a decider constructed at time 0 with `construct` ready pods.
local function run(p, construct, steps, prep)
  local st = kpa_state(0, construct)
  if prep then
    prep(st)
  end
  for i, s in ipairs(steps) do
    if s.params then
      p = s.params
    end
    local n, panicking, _, _, e = kpa_scale(p, st, s.at or 0, s.ready or 0, s.stable or 0, s.panic or 0,
      not s.unreachable)
    if s.invalid then
      assert_eq(n, nil, "step " .. i .. ": invalid")
    else
      assert_eq(n, s.want, "step " .. i .. ": replicas")
      assert(math.abs(e - (s.ebc or 0)) <= 1, string.format("step %d: excess burst capacity %d, want %d", i, e, s.ebc or 0))
      if s.panicking ~= nil then
        assert_eq(panicking, s.panicking, "step " .. i .. ": panicking")
      end
      if s.panic_at ~= nil then
        assert_eq(st.panic_time, s.panic_at, "step " .. i .. ": panic time")
      end
    end
  end
end

local delay_spec = { target_value = 10, target_utilization = 1, target_burst_capacity = 0,
  max_scale_down_rate = 10, max_scale_up_rate = 10, panic_threshold = 100, scale_down_delay = 300 }

function TestScaleDownDelay()
  run(kpa_params(delay_spec), 0, {
    { at = 2, stable = 40, panic = 40, want = 4 },
    { at = 300, want = 4 },
    { at = 302, want = 0 },
    { at = 540, stable = 40, panic = 40, want = 4 },
    { at = 600, stable = 30, panic = 30, want = 4 },
    { at = 660, want = 4 },
    { at = 840, want = 3 },
    { at = 900, want = 0 },
  })
end

function TestScaleDownDelayNotReachable()
  run(kpa_params(delay_spec), 0, {
    { at = 2, stable = 40, panic = 40, want = 4 },
    { at = 60, want = 4 },
    { at = 2, unreachable = true, want = 0 },
  })
end

function TestScaleDownDelayZero()
  local c = {}
  for k, v in pairs(delay_spec) do
    c[k] = v
  end
  c.scale_down_delay = nil
  run(kpa_params(c), 0, {
    { unreachable = true, stable = 40, panic = 40, want = 4 },
    { at = 0.5, unreachable = true, stable = 20, panic = 20, want = 2 },
  })
end

function TestStableModeIncrease()
  run(upstream(10, 101), 1, {
    { ready = 1, stable = 50, panic = 10, want = 5, ebc = ebc(10, 101, 10, 1) },
    { ready = 1, stable = 100, panic = 10, want = 10, ebc = ebc(10, 101, 10, 1) },
  })
end

function TestUnpanicAfterSlowIncrease()
  run(upstream(1, 98), 1, {
    { ready = 10, stable = 11, panic = 25, want = 25, ebc = ebc(1, 98, 25, 10), panic_at = 0 },
    { at = 30, ready = 40, stable = 30, panic = 41, want = 41, ebc = ebc(1, 98, 41, 40), panic_at = 0 },
    { at = 62, ready = 55, stable = 50, panic = 56, want = 50, ebc = ebc(1, 98, 56, 55), panicking = false },
  })
end

function TestExtendPanicWindow()
  run(upstream(1, 98), 1, {
    { ready = 10, stable = 11, panic = 25, want = 25, ebc = ebc(1, 98, 25, 10), panic_at = 0 },
    { at = 30, ready = 40, stable = 30, panic = 80, want = 80, ebc = ebc(1, 98, 80, 40), panic_at = 30 },
  })
end

function TestStableModeDecrease()
  run(upstream(10, 98), 1, {
    { ready = 8, stable = 100, panic = 100, want = 10, ebc = ebc(10, 98, 100, 8) },
    { ready = 8, stable = 50, panic = 50, want = 5, ebc = ebc(10, 98, 50, 8) },
  })
end

function TestNoTrafficScaleToZero()
  run(upstream(10, 75), 1, {
    { ready = 1, stable = 1, want = 1, ebc = ebc(10, 75, 0, 1) },
    { ready = 1, want = 0, ebc = ebc(10, 75, 0, 1) },
  })
end

function TestActivationScale()
  run(upstream(10, 75, { activation_scale = 2 }), 1, {
    { ready = 1, want = 0, ebc = ebc(10, 75, 0, 1) },
    { ready = 1, stable = 1, want = 2, ebc = ebc(10, 75, 0, 1) },
  })
end

function TestPanicModeExponentialTrackAndStabilize()
  run(upstream(1, 101), 1, {
    { ready = 1, stable = 6, panic = 6, want = 6, ebc = ebc(1, 101, 6, 1) },
    { ready = 6, stable = 36, panic = 36, want = 36, ebc = ebc(1, 101, 36, 6), panic_at = 0 },
    { at = 1, ready = 36, stable = 216, panic = 216, want = 216, ebc = ebc(1, 101, 216, 36), panic_at = 1 },
    { at = 1, ready = 216, stable = 1296, panic = 1296, want = 1296, ebc = ebc(1, 101, 1296, 216), panic_at = 1 },
    { at = 2, ready = 1296, stable = 1296, panic = 1296, want = 1296, ebc = ebc(1, 101, 1296, 1296) },
  })
end

function TestAutoscalerScaleTable()
  local in_panic = function(st)
    st.panic_time, st.max_panic_pods = -5, 5
  end
  local cases = {
    { "NoDataAtZeroNoAutoscale", upstream(10, 100), { ready = 1, want = 0, ebc = ebc(10, 100, 0, 1) } },
    { "StableModeUnlimitedTBC", upstream(181, -1), { ready = 1, stable = 21, panic = 26, want = 1, ebc = -1 } },
    { "0TBC", upstream(10, 0), { ready = 1, stable = 50, panic = 49, want = 5, ebc = 0 } },
    { "StableModeNoChange", upstream(10, 100), { ready = 1, stable = 50, panic = 50, want = 5, ebc = ebc(10, 100, 50, 1) } },
    { "PanicStableLargerThanPanic", upstream(1, 100), { ready = 5, stable = 50, panic = 30, want = 50, ebc = ebc(1, 100, 30, 5) }, in_panic },
    { "PanicStableLessThanPanic", upstream(1, 100), { ready = 5, stable = 20, panic = 30, want = 30, ebc = ebc(1, 100, 30, 5) }, in_panic },
    { "StableModeNoChangeAlreadyScaled", upstream(10, 100), { ready = 5, stable = 50, panic = 50, want = 5, ebc = ebc(10, 100, 50, 5) } },
    { "StableModeIncreaseWithSmallScaleUpRate", upstream(1, 1982, { max_scale_up_rate = 1.1 }),
      { ready = 2, stable = 3, panic = 3.1, want = 3, ebc = ebc(1, 1982, 3.1, 2) } },
    { "StableModeDecreaseWithSmallScaleDownRate", upstream(10, 1982, { max_scale_down_rate = 1.1 }),
      { ready = 100, stable = 1, panic = 1, want = 90, ebc = ebc(10, 1982, 1, 100) } },
    { "StableModeDecreaseNonReachable", upstream(10, 1982, { max_scale_down_rate = 1.1 }),
      { ready = 100, stable = 1, panic = 1, unreachable = true, want = 1, ebc = ebc(10, 1982, 1, 100) } },
    { "PanicModeDoublePodCount", upstream(10, 84), { ready = 1, stable = 50, panic = 100, want = 10, ebc = ebc(10, 84, 100, 1) } },
  }
  for _, c in ipairs(cases) do
    local ok, err = pcall(run, c[2], 1, { c[3] }, c[4])
    assert(ok, c[1] .. ": " .. tostring(err))
  end
end

function TestPanicThenUnPanicScaleDown()
  run(upstream(10, 93), 1, {
    { ready = 1, stable = 100, panic = 100, want = 10, ebc = ebc(10, 93, 100, 1) },
    { ready = 10, stable = 100, panic = 1000, want = 100, ebc = ebc(10, 93, 1000, 10) },
    { at = 30, ready = 10, stable = 1, panic = 1, want = 100, ebc = ebc(10, 93, 1, 10) },
    { at = 61, ready = 10, stable = 1, panic = 1, want = 1, ebc = ebc(10, 93, 1, 10) },
  })
end

function TestRateLimits()
  run(upstream(10, 61), 1, {
    { ready = 1, stable = 1000, panic = 1001, want = 10, ebc = ebc(10, 61, 1001, 1) },
    { ready = 10, stable = 1000, panic = 1001, want = 100, ebc = ebc(10, 61, 1001, 10) },
  })
  run(upstream(10, 61), 1, {
    { ready = 100, stable = 1, panic = 1, want = 10, ebc = ebc(10, 61, 1, 100) },
    { ready = 10, stable = 1, panic = 1, want = 1, ebc = ebc(10, 61, 1, 10) },
  })
end

function TestCantCountPods()
  run(upstream(10, 81), 1, { { ready = -1, stable = 1000, panic = 888, invalid = true } })
  -- Through on_tick: an unknown count makes no action (the scale stays), not one pod.
  local m = fixture{
    targets = { svc = { replicas = -1 } },
    routes = { svc = { concurrency = 11 } },
  }
  assert_eq(decide(m, {}), {})
end

function TestOnePodAsMinimumIfEndpointsNotFound()
  run(upstream(10, 81), 1, { { ready = 0, stable = 1000, panic = 888, want = 10, ebc = ebc(10, 81, 888, 0) } })
end

function TestUpdateTarget()
  run(upstream(10, 77), 1, {
    { ready = 1, stable = 100, panic = 101, want = 10, ebc = ebc(10, 77, 101, 1) },
    { params = upstream(1, 71), ready = 10, stable = 100, panic = 101, want = 100, ebc = ebc(1, 71, 101, 10) },
  })
end

function TestStartInPanicMode()
  for _, c in ipairs({ { -1, 0 }, { 0, 0 }, { 1, 1 }, { 2, 2 } }) do
    local st = kpa_state(7, c[1])
    assert_eq(st.panic_time ~= nil, c[1] > 1, "constructed with " .. c[1])
    assert_eq(st.max_panic_pods, c[2], "max panic pods constructed with " .. c[1])
  end
  -- Through on_tick: first seen at 10 replicas with little demand, the target keeps 10.
  local m = fixture{
    targets = { svc = { replicas = 10 } },
    routes = { svc = { concurrency = 2 } },
  }
  assert_action(decide(m, {}), "scale", { target = "svc", replicas = 10, panic = true })
end

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

local anchor = { target_value = 10, target_utilization = 1, panic_threshold = 2,
  max_scale_up_rate = 10, max_scale_down_rate = 10, target_burst_capacity = 0 }

function TestNoScaleDownInPanicAndUnpanicAfterStableWindow()
  run(kpa_params(anchor), 1, {
    { ready = 8, stable = 100, panic = 200, want = 20, panicking = true },
    { at = 10, ready = 20, stable = 50, panic = 50, want = 20, panicking = true },
    { at = 61, ready = 20, stable = 50, panic = 50, want = 5, panicking = false },
  })
end

function TestScaleToZeroGrace()
  local base = { target_value = 1, target_utilization = 1, max_scale_down_rate = 2, target_burst_capacity = 0 }
  -- No grace by default: zero at once, as the decider.
  run(kpa_params(base), 1, { { ready = 1, stable = 1, panic = 1, want = 1 }, { at = 2, ready = 1, want = 0 } })
  base.scale_to_zero_grace = 30
  run(kpa_params(base), 1, {
    { ready = 1, stable = 1, panic = 1, want = 1 },
    { at = 10, ready = 1, want = 1 },
    { at = 29, ready = 1, want = 1 },
    { at = 31, ready = 1, want = 0 },
    { at = 40, ready = 0, want = 0 },
  })
  base.scale_to_zero_grace = -1
  run(kpa_params(base), 1, { { ready = 1, stable = 1, panic = 1, want = 1 }, { at = 3600, ready = 1, want = 1 } })
end
