-- Tests for predictive.lua. The host sets config = {target = "api", rps_per_replica = 10,
-- alpha = 0.5, beta = 0.5, cold_start = 10}; ticks are one second.

local function at(rps)
  return fixture{
    targets = { api = { replicas = 1, max = 100 } },
    routes = { api = { rps = rps, count = rps } },
  }
end

function TestFlatLoadNeedsWhatItServes()
  local state = {}
  for _ = 1, 5 do
    assert_action(decide(at(50), state), "scale", { target = "api", replicas = 5 })
  end
end

function TestRisingLoadIsAnticipated()
  local state = {}
  local last
  for i = 1, 6 do
    last = decide(at(10 * i), state)
  end
  -- At 60 rps and rising by 10 rps a second, ten seconds ahead is far above 60:
  -- more than the 6 replicas the current rate needs.
  local a = assert_action(last, "scale", { target = "api" })
  assert(a.replicas > 6, "forecast did not lead the load: " .. a.replicas)
end

function TestFallingLoadNeverUndershootsTheCurrentRate()
  local state = {}
  for _, rps in ipairs({ 100, 80, 60, 40 }) do
    local a = assert_action(decide(at(rps), state), "scale", {})
    assert(a.replicas >= rps / 10, "undershoot at " .. rps)
  end
end

function TestHolt()
  local s = {}
  assert_eq(holt(s, 10, 3), 10)
  assert_near(holt(s, 20, 0), 15) -- level 0.5*20 + 0.5*10
  assert_near(s.trend, 2.5)       -- 0.5*(15-10) + 0.5*0
end
