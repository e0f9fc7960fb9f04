-- Tests for adaptive.lua. The host sets config = {target = "api", target_value = 10,
-- cold_start = 10} (see autoscale/policies_lua_test.go); ticks are one second; the
-- service time is learned from the fixtures' mean latency (or set in the state).
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
  -- 100 rps served, but 5,000 requests queued: the backlog adds replicas to drain it,
  -- at most up_cap (2) times the rate's need (2).
  local a = assert_action(decide(at(2, 100, 5000), { s = 0.1 }), "scale", {})
  assert(a.replicas > 2 and a.replicas <= 4, "scaled to " .. a.replicas)
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
  -- Once idle for idle_to_zero (60 s), it asks for zero at once.
  clock.advance(1)
  assert_action(decide(idle(), state), "scale", { replicas = 0 })
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

function TestWakesOnceForAQueueThatPilesUp()
  -- No service time learned: the requests in flight are the demand, taken once per
  -- cold start while they pile up for the replicas to start.
  local state = {}
  local function queued(n) return at(0, 0, n, { count = 0, min = 0, mean = 0 }) end
  local first = assert_action(decide(queued(30), state), "scale", {}).replicas
  assert_eq(first, need(30, 0.85))
  for k = 1, 9 do
    clock.advance(1)
    assert_action(decide(queued(30 + 30 * k), state), "scale", { replicas = first })
  end
end

function TestARampIsAnticipatedAStepIsNot()
  local ramp, step = {}, {}
  local t0 = clock.now()
  local r, s
  for k = 0, 11 do
    r = trend(ramp, t0 + k, 100 + 10 * k)
    s = trend(step, t0 + k, k < 6 and 100 or 500)
  end
  assert_near(r, 10, 1e-9)
  assert_eq(s, 0)
  -- Too few readings: no trend.
  assert_eq(trend({}, t0, 100), 0)
end

function TestABurstSeenKeepsHeadroom()
  -- 200 rps needs 4 replicas at down_utilization; after a burst to 600 rps, the
  -- surprise (400 rps above the forecast) keeps more for minutes, halving every
  -- burst_memory (600 s).
  local state = { s = 0.1 }
  local n = 4
  local function tick(rps)
    clock.advance(1)
    n = assert_action(decide(at(n, rps, rps / 10), state), "scale", {}).replicas
  end
  for _ = 1, 30 do tick(200) end
  assert_eq(n, 4)
  for _ = 1, 30 do tick(600) end
  assert(n >= 8, "burst: " .. n)
  for _ = 1, 300 do tick(200) end
  assert(n >= 7, "lost the headroom: " .. n)
  for _ = 1, 3600 do tick(200) end
  assert(n <= 5, "kept the headroom forever: " .. n)
end

function TestScalesDownOnlyAfterTheDelayAndInSteps()
  local state = { s = 0.1 }
  local n = 2
  local ups, last_up, downs = 0, nil, {}
  local function tick(rps)
    clock.advance(1)
    local a = assert_action(decide(at(n, rps, rps / 10), state), "scale", {})
    if a.replicas > n then
      last_up = clock.now()
    elseif a.replicas < n then
      downs[#downs + 1] = clock.now()
      assert(last_up == nil or clock.now() - last_up >= 150, "scaled down within down_delay of a scale-up")
      assert(a.replicas >= n - math.max(1, math.floor(n * 0.25)), "stepped too far")
    end
    n = a.replicas
  end
  for _ = 1, 60 do tick(1000) end
  for _ = 1, 1200 do tick(100) end
  assert(#downs >= 2, "never came down")
  for i = 2, #downs do
    assert(downs[i] - downs[i - 1] >= 30, "steps closer than down_step_interval")
  end
end
