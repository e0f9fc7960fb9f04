-- Tests for adaptive.lua. The host sets config = {target = "api", target_value = 10,
-- cold_start = 10} (see autoscale/simulate's adaptive_test.go); ticks are one second.
-- A replica serves 10 requests at once; at 100 ms a request, 100 rps at full use.

local function at(replicas, rps, concurrency, extra)
  local route = { count = rps, rps = rps, mean = 100, concurrency = concurrency, in_flight = math.floor(concurrency) }
  local min = 1
  for k, v in pairs(extra or {}) do
    if k == "min" then min = v else route[k] = v end
  end
  return fixture{
    targets = { api = { replicas = replicas, min = min, max = 100 } },
    routes = { api = route },
  }
end

function TestLittlesLawWithHeadroom()
  -- 400 rps at 100 ms is 40 in flight: (40 + sqrt(40)) / (10 * 0.85) = 5.45 -> 6.
  local a = assert_action(decide(at(6, 400, 40), {}), "scale", { target = "api" })
  assert_eq(a.replicas, 6)
end

function TestScalesUpAtOnce()
  local state = {}
  decide(at(2, 100, 10), state)
  clock.advance(1)
  -- Load jumps to 800 rps: 80 in flight need (80 + 8.9) / 8.5 -> 11 at least.
  local a = assert_action(decide(at(2, 800, 80), state), "scale", {})
  assert(a.replicas >= 11, "scaled to " .. a.replicas)
end

function TestBacklogIsCapped()
  local state = {}
  -- 100 rps served, but 5,000 requests queued: the backlog term is capped.
  local a = assert_action(decide(at(2, 100, 5000), state), "scale", {})
  assert(a.replicas <= 3 * 2, "backlog ran away: " .. a.replicas)
end

function TestHoldsBeforeScalingDown()
  local state = {}
  decide(at(10, 800, 80), state)
  for _ = 1, 100 do
    clock.advance(1)
    assert_action(decide(at(10, 100, 10), state), "scale", { replicas = 10 })
  end
end

function TestStepsDownGentlyAfterTheWindow()
  local state = {}
  decide(at(10, 800, 80), state)
  local last = 10
  for _ = 1, 400 do
    clock.advance(1)
    local a = assert_action(decide(at(last, 100, 10), state), "scale", {})
    assert(a.replicas >= last - math.max(1, math.floor(last * 0.25)), "stepped too far")
    last = a.replicas
  end
  assert(last <= 3, "did not come down: " .. last)
end

function TestScalesToZeroOnlyWhenIdleAndAllowed()
  local state = {}
  -- (a fixture reads the clock when it is made)
  local function idle() return at(1, 0, 0, { count = 0, min = 0 }) end
  decide(at(1, 10, 1, { min = 0 }), state) -- some traffic, then none
  for _ = 1, 59 do
    clock.advance(1)
    assert(assert_action(decide(idle(), state), "scale", {}).replicas >= 1, "scaled to zero early")
  end
  -- The fixture keeps one replica, so the policy asks for zero once per down step.
  local zero = false
  for _ = 1, 300 do
    clock.advance(1)
    zero = zero or assert_action(decide(idle(), state), "scale", {}).replicas == 0
  end
  assert(zero, "never asked for zero")
  -- With min 1 it never asks for zero.
  state = {}
  local function busy() return at(1, 0, 0, { count = 0 }) end
  for _ = 1, 300 do
    clock.advance(1)
    assert(assert_action(decide(busy(), state), "scale", {}).replicas >= 1)
  end
end

function TestStaysAtZeroWithoutTraffic()
  local m = at(0, 0, 0, { count = 0, min = 0 })
  assert_action(decide(m, {}), "scale", { replicas = 0 })
end

function TestFromZeroTheQueueIsTheDemand()
  -- No replica yet; 30 requests wait for one.
  local m = at(0, 0, 30, { count = 0, min = 0, mean = 0 })
  local a = assert_action(decide(m, {}), "scale", {})
  assert(a.replicas >= 4, "scaled to " .. a.replicas)
end

function TestNeed()
  assert_eq(need(0, 0.85), 0)
  assert_eq(need(40, 0.85), 6)
  assert_eq(need(1, 1), 1)
end
