-- An example policy: target tracking on requests per second with a panic window
-- (after Knative's KPA: a 60 s stable window and a 6 s panic window), plus load
-- shedding on a slow route and ejection of a failing backend. Parameters come from the
-- host's config table.
local as = require("autoscale")

local target = config.target or "web"
local route = config.route or "/checkout"
local rps_per_replica = config.rps_per_replica or 100
local panic_threshold = config.panic_threshold or 2.0
local slo_p99_ms = config.slo_p99_ms or 250
local pool = config.pool or "web"
local eject_error_rate = config.eject_error_rate or 0.5

local function desired(rps)
  return math.max(1, math.ceil(rps / rps_per_replica))
end

function on_tick(m, state)
  local t = m.target(target)
  if t == nil then
    return nil
  end
  local stable = m.route(route)
  local panic = m.route(route, 6)
  local actions = {}

  local want = desired(stable.rps)
  local burst = desired(panic.rps)
  if burst >= panic_threshold * math.max(t.replicas, 1) then
    state.panic_since = state.panic_since or m.now
  elseif state.panic_since and m.now - state.panic_since >= 60 then
    state.panic_since = nil
  end
  if state.panic_since then
    want = math.max(want, burst, t.replicas)
  end
  want = math.min(math.max(want, t.min), t.max)
  if want ~= t.replicas then
    actions[#actions + 1] = as.scale(target, want, "rps " .. stable.rps, { panic = state.panic_since ~= nil })
  end

  if stable.count > 0 and stable.p99 > slo_p99_ms then
    state.slow = (state.slow or 0) + 1
  else
    state.slow = 0
  end
  if state.slow >= 3 then
    actions[#actions + 1] = shed(route, 0.2, 2)
  elseif state.slow == 0 and state.shedding then
    actions[#actions + 1] = shed(route, 0)
  end
  state.shedding = state.slow >= 3

  -- Eject for 30 s the backend failing the most, when it fails more than half its
  -- requests. m.max reduces the scope in Go, however many backends there are.
  local rate, worst = m.max("backend", "error_rate")
  if worst and rate > eject_error_rate then
    actions[#actions + 1] = as.eject(pool, worst, 30)
  end
  return actions
end

function on_request(req)
  if req.tenant == "" and req.path:sub(1, 5) == "/api/" then
    return { status = 401, body = "tenant required" }
  end
  if req:header("X-Canary") == "1" then
    return { route = route .. "-canary", headers = { ["X-Routed"] = "canary" } }
  end
end

function self_test()
  assert(desired(0) == 1)
  assert(desired(250) == 3)
end
