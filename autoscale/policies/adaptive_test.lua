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
  -- 400 rps at 100 ms is 40 in flight: square-root staffing at full utilisation,
  -- (40 + sqrt(40)) / 10 = 4.63 -> 5, and no more: the headroom is not paid twice.
  local a = assert_action(decide(at(1, 400, 40), {}), "scale", { target = "api" })
  assert_eq(a.replicas, 5)
end

function TestScalesUpAtOnce()
  local state = {}
  decide(at(2, 100, 10), state)
  clock.advance(1)
  -- Load jumps to 800 rps: 80 in flight need (80 + 8.9) / 10 -> 9 at least.
  local a = assert_action(decide(at(2, 800, 80), state), "scale", {})
  assert(a.replicas >= 9, "scaled to " .. a.replicas)
end

function TestBacklogIsCapped()
  -- 100 rps served, but 5,000 requests queued: the backlog adds replicas to drain it,
  -- at most up_cap (3) times the rate's need (2).
  local a = assert_action(decide(at(2, 100, 5000), { s = 0.1 }), "scale", {})
  assert(a.replicas > 2 and a.replicas <= 6, "scaled to " .. a.replicas)
end

function TestHoldsBeforeScalingDown()
  -- 800 rps scales 8 replicas up to 9; a fall to 100 rps right after keeps them for
  -- down_delay (125 s).
  local state = {}
  assert_action(decide(at(8, 800, 80), state), "scale", { replicas = 9 })
  for _ = 1, 100 do
    clock.advance(1)
    assert_action(decide(at(9, 100, 10), state), "scale", { replicas = 9 })
  end
end

function TestStepsDownGentlyAfterTheWindow()
  -- After 800 rps, 100 rps needs 2 of 10 replicas: under half the count, so each step
  -- halves it (a quarter is the most a step removes while the need is above half).
  local state = {}
  decide(at(10, 800, 80), state)
  local last = 10
  for _ = 1, 400 do
    clock.advance(1)
    local a = assert_action(decide(at(last, 100, 10), state), "scale", {})
    assert(a.replicas >= last - math.floor(last / 2), "stepped too far")
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
  assert_eq(need(40, 1), 5)
  assert_eq(need(1, 1), 1)
end

function TestWakesOnceForAQueueThatPilesUp()
  -- No service time learned: the requests in flight are the demand, taken once per
  -- cold start while they pile up for the replicas to start.
  local state = {}
  local function queued(n) return at(0, 0, n, { count = 0, min = 0, mean = 0 }) end
  local first = assert_action(decide(queued(30), state), "scale", {}).replicas
  assert_eq(first, need(30, 1))
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

function TestNoiseIsNotATrend()
  -- A flat 400 rps read with noise of a few rps each second has as many rises as
  -- falls of any size: its median rise is within a standard error (trend_z) of zero,
  -- or barely above it. The same noise on a ramp of 10 rps a second leaves most of
  -- the ramp.
  local noise = { 0, 7, -4, 9, -8, 3, -6, 8, -2, 5, -9, 4 }
  local flat, ramp = {}, {}
  local t0 = clock.now()
  local f, r
  for k = 0, 11 do
    f = trend(flat, t0 + k, 400 + noise[k + 1])
    r = trend(ramp, t0 + k, 100 + 10 * k + noise[k + 1])
  end
  assert(f < 3.5, "flat's trend " .. f)
  assert(r > 6 and r < 14, "ramp's trend " .. r)
end

function TestABurstSeenKeepsHeadroom()
  -- 200 rps needs 3 replicas ((20 + sqrt(20)) / 10 -> 3); after a burst to 600 rps
  -- (7 replicas), the surprise (400 rps above the forecast) keeps room for another
  -- burst, undiminished for burst_memory (600 s), and is forgotten after it.
  local state = { s = 0.1 }
  local n = 3
  local function tick(rps)
    clock.advance(1)
    n = assert_action(decide(at(n, rps, rps / 10), state), "scale", {}).replicas
  end
  for _ = 1, 30 do tick(200) end
  assert_eq(n, 3)
  for _ = 1, 30 do tick(600) end
  assert(n >= 7, "burst: " .. n)
  for _ = 1, 500 do tick(200) end
  assert(n >= 7, "lost the headroom within burst_memory: " .. n)
  for _ = 1, 600 do tick(200) end
  assert_eq(n, 3)
end

function TestNoiseIsNotASurprise()
  -- A steady 400 rps whose readings jump by a few rps (well within 3 standard
  -- deviations, sqrt(400 / 6) = 8.2 rps, each) keeps no headroom: it holds what 400
  -- rps needs ((40 + sqrt(40)) / 10 -> 5), and after a scale-up to more, comes back,
  -- to within the one replica that the forecast lets through of readings this noisy
  -- (rises of up to 29 rps a second, several times a Poisson window's).
  local state = { s = 0.1 }
  local n = 8
  local noise = { 0, 12, -9, 15, -14, 6, -11, 13, -3, 9 }
  for k = 1, 1200 do
    clock.advance(1)
    local rps = 400 + noise[k % #noise + 1]
    n = assert_action(decide(at(n, rps, rps / 10), state), "scale", {}).replicas
  end
  assert_eq(state.peak, 0)
  assert(n == 5 or n == 6, "holds " .. n)
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
      assert(last_up == nil or clock.now() - last_up >= 125, "scaled down within down_delay of a scale-up")
      if n >= 4 then
        -- the need (100 rps: 2) is at most half the count: a step halves it
        assert(a.replicas >= n - math.floor(n / 2), "stepped too far")
      else
        assert(a.replicas >= n - math.max(1, math.floor(n * 0.25)), "stepped too far")
      end
    end
    n = a.replicas
  end
  for _ = 1, 60 do tick(1000) end
  for _ = 1, 1200 do tick(100) end
  assert(#downs >= 2, "never came down")
  for i = 2, #downs do
    assert(downs[i] - downs[i - 1] >= 10, "steps closer than down_fast_interval")
  end
end

function TestASpikeIsNotHeldAfterItEnds()
  -- 50 rps (1 replica) spikes to 1,500 rps for 90 s: the surprise (~1,450 rps) is
  -- remembered for burst_memory, but the headroom kept is at most burst_cap (2) times
  -- the rate, so once the spike has ended the count comes down to what 50 rps and
  -- 100 rps of headroom need ((15 + sqrt(15)) / 10 -> 2), halving the count a step,
  -- within a few minutes rather than burst_memory.
  local state = { s = 0.1 }
  local n = 1
  local function tick(rps)
    clock.advance(1)
    n = assert_action(decide(at(n, rps, rps / 10), state), "scale", {}).replicas
  end
  for _ = 1, 60 do tick(50) end
  for _ = 1, 90 do tick(1500) end
  local peak = n
  assert(peak >= 17, "spike: " .. peak)
  for _ = 1, 240 do tick(50) end
  assert(state.peak > 0 and state.peak <= 2 * 50 + 1e-9, "headroom " .. state.peak)
  assert(n <= 2, "held " .. n .. " of " .. peak .. " after the spike")
end

-- full runs the fixture of two full replicas (20 in flight, 25 now) completing rps
-- requests a second for the ticks given, one a second, and returns the state.
local function full(rps, ticks)
  local state = { s = 0.1 }
  for _ = 1, ticks do
    decide(at(2, rps, 20, { in_flight = 25 }), state)
    clock.advance(1)
  end
  return state
end

function TestLearnsTheServiceTimeAServiceThatSlowsShowsWhenFull()
  -- Two full replicas completing 100 rps rather than the 200 that 100 ms gives: the
  -- service shows 10 * 2 / 100 = 0.2 s when run hot, once the count has held for a
  -- cold start and a panic window (16 s) and it was seen on 3 ticks in a row.
  local state = full(100, 16)
  assert(state.slow_s == nil, "learned before the count held")
  state = full(100, 20)
  assert_near(state.slow_s, 0.2, 1e-9)
  -- It sizes by it once the load is lighter: 97 rps at 0.2 s need 3, not 2.
  local a = assert_action(decide(at(2, 100, 5), state), "scale", {})
  assert_eq(a.replicas, 3)
end

function TestFullReplicasServingTheirRateAreNotSlow()
  -- Two full replicas completing the 200 rps that 100 ms gives show 0.1 s: no slowing.
  local state = full(200, 40)
  assert(state.slow_s == nil, "learned a slowing from full replicas serving their rate")
  -- Nor when the window shows requests given up on (they held slots, completed none).
  state = { s = 0.1 }
  for _ = 1, 40 do
    decide(at(2, 100, 20, { in_flight = 25, canceled = 5 }), state)
    clock.advance(1)
  end
  assert(state.slow_s == nil, "learned a slowing from canceled requests")
end

function TestABacklogAtTheReplicasIsNotASlowing()
  -- 100 rps from full replicas while 100 are in flight (5 times the slots): the
  -- backlog of a jump, queued at the replicas there before it, not a slowing.
  local state = { s = 0.1 }
  for _ = 1, 40 do
    decide(at(2, 100, 20, { in_flight = 25, max_in_flight = 100 }), state)
    clock.advance(1)
  end
  assert(state.slow_s == nil, "learned a slowing from a backlog")
end

function TestAStepDownReversedIsAFloor()
  -- A step down from 3 to 2 reversed 30 s later by 400 rps: 3 becomes a floor.
  local now = clock.now()
  local state = { s = 0.1, last_up = now - 1000, last_down = now - 30, down_from = 3 }
  assert_action(decide(at(2, 400, 40), state), "scale", { replicas = 5 })
  assert_eq(state.rebound, 3)
  -- After down_delay, 30 rps needs 1 of 5: the steps stop at the floor, not at 1.
  local last = 5
  for _ = 1, 300 do
    clock.advance(1)
    last = assert_action(decide(at(last, 30, 3), state), "scale", {}).replicas
  end
  assert_eq(last, 3)
  -- Once the floor has held nothing for burst_memory (600 s), it goes.
  state.rebound_until = clock.now() - 1
  for _ = 1, 100 do
    clock.advance(1)
    last = assert_action(decide(at(last, 30, 3), state), "scale", {}).replicas
  end
  assert_eq(last, 1)
end

function TestNoStepDownBeforeAWindowOfRecommendations()
  -- At the start nothing has completed yet (a service slower than a tick): the rate
  -- reads 0, and with no down_window (60 s) of recommendations behind it the count
  -- holds rather than stepping down on that one reading.
  local state = { s = 0.1 }
  local function starting() return at(2, 0, 4, { count = 0 }) end
  for _ = 1, 59 do
    assert_action(decide(starting(), state), "scale", { replicas = 2 })
    clock.advance(1)
  end
  -- Once a whole window of them says so, it steps down.
  clock.advance(1)
  assert_action(decide(starting(), state), "scale", { replicas = 1 })
end

function TestArrivalsWithinTheNoiseOfCapacityAreNoQueue()
  -- 8 replicas serve 800 rps; they complete 798 while the requests in flight grow by
  -- 10 a second: 808 rps, 8 beyond them, within the noise of the rate
  -- (sqrt(808 / 6) = 11.6 rps), adds no backlog over the cold start, and 81 in flight
  -- need (81 + 9) / 10 -> 9 replicas, not the 10 that 80 queued requests would add.
  local state = { s = 0.1 }
  decide(at(8, 798, 80), state)
  clock.advance(1)
  local a = assert_action(decide(at(8, 798, 90), state), "scale", {})
  assert_eq(a.replicas, 9)
end

function TestReplicasStartingServeTheQueueTheyWillFind()
  -- 500 rps at 1 replica, which completes 100 a second; 10 replicas asked for 4 s
  -- ago are ready in 6 s. The queue that a replica asked for now finds is what the
  -- one replica cannot serve until those are ready, 6 s of 391 rps (the rate less
  -- its noise), plus the 1,995 queued already: (500 + 4,340 / 6) * 0.1 = 122 in
  -- flight need 14, not the 17 that a whole cold start of 400 rps would ask.
  local state = { s = 0.1 }
  decide(at(1, 100, 50), state)
  local a
  for k = 1, 5 do
    clock.advance(1)
    a = assert_action(decide(at(10, 100, 50 + 400 * k), state), "scale", {})
  end
  assert_eq(a.replicas, 14)
end

function TestABacklogDrainsWithinAServiceTime()
  -- A service of 12 s (a language model): 4 replicas completing 3 rps (36 in service)
  -- with 82 in flight, 37 of them queued beyond the noise. A request takes 12 s
  -- however many slots wait for it, so the queue needs its 37 slots, not the 74 that
  -- draining it within the 6 s panic window would ask: (3 + 37 / 12) * 12 = 73 in
  -- flight need (73 + 8.5) / 10 -> 9 replicas, not 13.
  local a = assert_action(decide(at(4, 3, 82, { mean = 12000 }), { s = 12 }), "scale", {})
  assert_eq(a.replicas, 9)
end
