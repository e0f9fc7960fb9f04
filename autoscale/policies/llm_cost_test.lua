-- Tests for llm_cost.lua. The host sets config = {models = {large = {target = "large",
-- slots = 4, max_queue = 2, ttft_ms = 800, cheaper = "small"}, small = {slots = 8}},
-- down_ticks = 2, idle_to_zero = 30}.

-- at returns an m: large with `replicas` of `max` (min 0), in flight and p99 TTFT.
local function at(replicas, max, in_flight, ttft, extra)
  extra = extra or {}
  return fixture{
    targets = {
      large = { replicas = replicas, min = 0, max = max },
      small = { replicas = extra.small or 1, min = 0, max = 10 },
    },
    models = {
      large = { in_flight = in_flight, rps = extra.rps or in_flight, count = 10 },
      ["large:economy"] = { in_flight = 0, rps = 0 },
      small = { in_flight = extra.small_in_flight or 1, rps = 1, count = 10 },
    },
    scopes = { ttft = { large = { p99 = ttft, count = 10 } } },
  }
end

function TestEconomyLaneOnRequest()
  assert_eq(on_request(request{ model = "large", priority = 0, tokens = 2000 }), { model = "large:economy" })
  assert_eq(on_request(request{ model = "large", priority = 5, tokens = 100 }), { model = "large:economy" })
  assert_eq(on_request(request{ model = "large", priority = 5, tokens = 2000 }), nil)
  assert_eq(on_request(request{ model = "large", priority = 5 }), nil) -- no estimate: not short
  assert_eq(on_request(request{ model = "small", priority = 0, tokens = 10 }), nil) -- nothing cheaper
end

-- Branch one: the queue says so and there is room: scale up, route nothing.
function TestQueueBelowMaxScalesUp()
  local acts = decide(at(2, 6, 14, 300), {})
  local a = assert_action(acts, "scale", { target = "large", replicas = 4 })
  assert(string.find(a.reason, "queue 6 %(max 2%)"), a.reason)
  assert_no_action(acts, "route")
end

function TestSlowTTFTAddsAReplica()
  local a = assert_action(decide(at(2, 6, 6, 1200), {}), "scale", { target = "large", replicas = 3 })
  assert(string.find(a.reason, "p99 TTFT 1200ms %(objective 800ms%)"), a.reason)
end

-- Branch two: at its max, pressed: the economy lane goes to the cheaper model, once.
function TestAtMaxRoutesTheLaneToTheCheaperModel()
  local state = {}
  local acts = decide(at(6, 6, 40, 1500), state)
  assert_no_action(acts, "scale", { target = "large" })
  local r = assert_action(acts, "route", { from = "large:economy", to = "small", fraction = 1 })
  assert(string.find(r.reason, "at max 6 replicas"), r.reason)
  assert_no_action(decide(at(6, 6, 40, 1500), state), "route") -- said once
  -- The pressure goes: after down_ticks calm ticks, the lane comes back.
  assert_no_action(decide(at(6, 6, 10, 300), state), "route")
  assert_action(decide(at(6, 6, 10, 300), state), "route", { from = "large:economy", fraction = 0 })
end

function TestColdRoutesAndWakes()
  local acts = decide(at(0, 6, 3, 0), {})
  local a = assert_action(acts, "scale", { target = "large", replicas = 1 })
  assert(string.find(a.reason, "cold"), a.reason)
  local r = assert_action(acts, "route", { from = "large:economy", to = "small", fraction = 1 })
  assert(string.find(r.reason, "cold"), r.reason)
end

function TestIdleScalesToZero()
  local state = {}
  assert_no_action(decide(at(1, 6, 0, 0, { rps = 0 }), state), "scale", { target = "large" })
  clock.advance(31)
  local a = assert_action(decide(at(1, 6, 0, 0, { rps = 0 }), state), "scale", { target = "large", replicas = 0 })
  assert(string.find(a.reason, "idle for 31s"), a.reason)
end

function TestCalmStepsDown()
  local state = {}
  assert_no_action(decide(at(4, 6, 2, 100), state), "scale", { target = "large" })
  assert_action(decide(at(4, 6, 2, 100), state), "scale", { target = "large", replicas = 3 })
end

function TestNoChangeNoAction()
  -- 8 in flight on 2 replicas of 4 slots: full, no queue, TTFT fine.
  assert_eq(decide(at(2, 6, 8, 300, { small_in_flight = 4 }), {}), {})
end

function TestWithoutTTFTWindowsTheQueueDecides()
  local m = fixture{
    targets = { large = { replicas = 2, min = 0, max = 6 }, small = { replicas = 1, min = 0, max = 10 } },
    models = { large = { in_flight = 14, rps = 14, count = 10 }, small = { in_flight = 4, rps = 1, count = 10 } },
  }
  local a = assert_action(decide(m, {}), "scale", { target = "large", replicas = 4 })
  assert(string.find(a.reason, "p99 TTFT 0ms"), a.reason)
end

function TestCalmStopsAtOneAndColdWithoutRequestsStaysCold()
  local state = {}
  decide(at(1, 6, 0, 0), state)
  assert_no_action(decide(at(1, 6, 0, 0), state), "scale", { target = "large" }) -- idle rule's 30 s not up
  -- Cold, with recent arrivals but none in flight: no wake, no routing.
  assert_eq(decide(at(0, 6, 0, 0, { rps = 3, small_in_flight = 4 }), {}), {})
end
