-- Tests for threshold.lua. The host sets config = {target = "api", up_ms = 200, down_ms = 80,
-- breaches = 3, step = 2, cooldown = 60}.

local function at(replicas, mean)
  return fixture{
    targets = { api = { replicas = replicas, min = 1, max = 10 } },
    routes = { api = { count = 100, mean = mean } },
  }
end

function TestAddsAfterThreeConsecutiveBreaches()
  local state = {}
  assert_eq(decide(at(2, 250), state), {})
  assert_eq(decide(at(2, 250), state), {})
  assert_action(decide(at(2, 250), state), "scale", { target = "api", replicas = 4 })
end

function TestABreakResetsTheCount()
  local state = {}
  decide(at(2, 250), state)
  decide(at(2, 250), state)
  assert_eq(decide(at(2, 150), state), {}) -- between the thresholds
  assert_eq(decide(at(2, 250), state), {})
  assert_eq(state.above, 1)
end

function TestCooldownThenHysteresisDown()
  local state = {}
  for _ = 1, 3 do decide(at(2, 250), state) end
  assert_eq(state.last_change, clock.now())
  -- Latency falls below down_ms, but the cooldown holds.
  for _ = 1, 3 do assert_eq(decide(at(4, 50), state), {}) end
  clock.advance(61)
  assert_action(decide(at(4, 50), state), "scale", { replicas = 3 })
end

function TestBetweenThresholdsNothingHappens()
  local state = {}
  for _ = 1, 5 do assert_eq(decide(at(4, 120), state), {}) end
end

function TestNoTrafficNoAction()
  local m = fixture{ targets = { api = { replicas = 2 } }, routes = { api = { count = 0 } } }
  assert_eq(decide(m, {}), {})
end

function TestCapsAtMax()
  local state = {}
  for _ = 1, 2 do decide(at(9, 300), state) end
  assert_action(decide(at(9, 300), state), "scale", { replicas = 10 })
end
