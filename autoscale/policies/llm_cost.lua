-- llm_cost: "cheaper model or scale up?" for an AI gateway. Per model, it scales the
-- model's target when its queue or its time to first token says so, and, while that
-- model is at its max or cold (no replica yet), sends its economy lane — low-priority
-- and short prompts — to a cheaper model instead of making them wait. Every action
-- says in its reason which it chose and why.
--
--   lane       on_request (this file, loaded as the request hook too) re-keys a
--              request for a model with a `cheaper` one to the model's economy lane,
--              model .. lane (default ":economy"), when its priority is at most
--              low_priority or its estimated prompt tokens at most short_tokens. The
--              model's backends serve the lane too (label model="large,large:economy"),
--              so the lane is served like the model until this policy routes it away
--   load       in flight = the model's and its lane's requests in flight at the
--              gateway (m.model(...).in_flight); capacity = replicas * slots (the
--              batch each replica runs at once); queue = in flight - capacity
--   ttft       the worse p99 of the model's and the lane's windows in ttft_scope
--   pressed    queue > max_queue, or p99 TTFT > ttft_ms
--   up         pressed and below max: ceil(in flight / slots) replicas, at least one
--              more when TTFT is over; the safety layer clamps to the target's bounds
--   cheaper    pressed and at max, or cold with requests in flight: route the lane to
--              `cheaper` (fraction 1); once neither pressed nor cold for down_ticks
--              ticks, route it back (fraction 0)
--   wake       cold (0 replicas) with requests in flight (held by the host until a
--              replica is ready): ceil(in flight / slots) replicas, at least 1
--   down       in flight below down_utilization of capacity for down_ticks ticks: one
--              replica less, not below min nor 1 (zero is the idle rule's)
--   zero       nothing in flight or arriving for idle_to_zero seconds, and min 0: 0
--
-- config keys:
--   models           table by model name (required) of:
--                      target        the loop's target for the model (default: the name)
--                      slots         requests one replica serves at once (default 8)
--                      max_queue     queued requests tolerated (default: slots)
--                      ttft_ms       p99 TTFT objective, ms (default: none)
--                      cheaper       the model the lane goes to (default: none)
--   lane             suffix of the economy lane's model key (default ":economy")
--   low_priority     priority at or below which a prompt is economy (default 0)
--   short_tokens     estimated prompt tokens at or below which it is (default 256)
--   ttft_scope       scope of the TTFT windows, keyed by model (default "ttft", where
--                    middleware/llm records them)
--   span             seconds of window per reading (default 10)
--   down_ticks       calm ticks before a step down or a route back (default 5)
--   down_utilization the fraction of capacity below which a tick is calm (default 0.5)
--   idle_to_zero     seconds idle before scaling to zero; -1 never (default -1)

local cfg = config or {}
local models = cfg.models or {}
local lane = cfg.lane or ":economy"
local low_priority = cfg.low_priority or 0
local short_tokens = cfg.short_tokens or 256
local ttft_scope = cfg.ttft_scope or "ttft"
local span = cfg.span or 10
local down_ticks = cfg.down_ticks or 5
local down_util = cfg.down_utilization or 0.5
local idle_to_zero = cfg.idle_to_zero or -1

local names = {}
for name in pairs(models) do names[#names + 1] = name end
table.sort(names)

-- to_lane is the decision on_request returns for each model that has a cheaper one,
-- built once: a table and a string per request would be most of the hook's cost
-- (BenchmarkFrontendInProcess in examples/llmgateway). The host only reads it.
local to_lane = {}
for _, name in ipairs(names) do
  if models[name].cheaper ~= nil then to_lane[name] = { model = name .. lane } end
end

function on_request(req)
  local decision = to_lane[req.model]
  if decision == nil then return nil end
  if req.priority <= low_priority or (req.tokens ~= nil and req.tokens <= short_tokens) then
    return decision
  end
  return nil
end

-- ttft_of reads a model's TTFT window; a scope that has no window yet reads as 0.
local function ttft_of(m, key)
  local ok, s = pcall(m.scope, ttft_scope, key, span)
  if ok then return s.p99 end
  return 0
end

-- reading returns what the policy sees of one model on this tick.
local function reading(m, name, mc)
  local w, wl = m.model(name, span), m.model(name .. lane, span)
  return {
    in_flight = w.in_flight + wl.in_flight,
    rps = w.rps + wl.rps,
    ttft = math.max(ttft_of(m, name), ttft_of(m, name .. lane)),
    slots = mc.slots or 8,
  }
end

local function decide_model(m, state, name, mc, out)
  local t = m.target(mc.target or name)
  if t == nil then return end
  local s = state[name] or { calm = 0, relieved = 0, idle_since = m.now, routed = false }
  state[name] = s
  local r = reading(m, name, mc)
  local cap = t.replicas * r.slots
  local queue = math.max(0, r.in_flight - cap)
  local max_queue = mc.max_queue or r.slots
  local slow = mc.ttft_ms ~= nil and r.ttft > mc.ttft_ms
  local pressed = queue > max_queue or slow
  local busy = r.in_flight > 0 or r.rps > 0
  local cold = t.replicas == 0
  if busy then s.idle_since = m.now end
  if pressed or r.in_flight >= cap * down_util then s.calm = 0 else s.calm = s.calm + 1 end
  if pressed or cold then s.relieved = 0 else s.relieved = s.relieved + 1 end

  local why = string.format("queue %d (max %d), p99 TTFT %.0fms%s", queue, max_queue, r.ttft,
    mc.ttft_ms and string.format(" (objective %.0fms)", mc.ttft_ms) or "")
  local n, reason
  if cold then
    if r.in_flight > 0 then
      n = math.max(1, math.ceil(r.in_flight / r.slots))
      reason = string.format("llm_cost: %s is cold with %d in flight: wake to %d", name, r.in_flight, n)
    end
  elseif pressed and t.replicas < t.max then
    n = math.max(math.ceil(r.in_flight / r.slots), slow and t.replicas + 1 or 0)
    n = math.min(math.max(n, t.replicas + 1), t.max)
    reason = string.format("llm_cost: %s %s: scale up to %d", name, why, n)
  elseif idle_to_zero >= 0 and t.min == 0 and not busy and m.now - s.idle_since >= idle_to_zero then
    n = 0
    reason = string.format("llm_cost: %s idle for %.0fs: scale to zero", name, m.now - s.idle_since)
  elseif s.calm >= down_ticks and t.replicas > math.max(t.min, 1) then
    n = t.replicas - 1
    s.calm = 0
    reason = string.format("llm_cost: %s calm for %d ticks (%d in flight of %d slots): scale down to %d",
      name, down_ticks, r.in_flight, cap, n)
  end
  local current = t.desired >= 0 and t.desired or t.replicas
  if n ~= nil and n ~= current then
    out[#out + 1] = scale(mc.target or name, n, reason)
  end

  if mc.cheaper == nil then return end
  local full = pressed and t.replicas >= t.max
  local waiting = cold and r.in_flight > 0
  if (full or waiting) and not s.routed then
    s.routed = true
    local state_why = full and string.format("at max %d replicas with %s", t.max, why) or "cold"
    out[#out + 1] = route(name .. lane, mc.cheaper, 1,
      string.format("llm_cost: %s %s: economy prompts to %s", name, state_why, mc.cheaper))
  elseif s.routed and s.relieved >= down_ticks then
    s.routed = false
    out[#out + 1] = route(name .. lane, mc.cheaper, 0,
      string.format("llm_cost: %s has room for %d ticks (%s): economy prompts back", name, s.relieved, why))
  end
end

function on_tick(m, state)
  local out = {}
  for _, name in ipairs(names) do
    decide_model(m, state, name, models[name], out)
  end
  return out
end
