-- adaptive: the recommended default. It sizes a target by Little's law on the offered
-- load, reacts to rises at once, anticipates ramps, and steps down only after load has
-- stayed low, so that it neither lags a surge nor flaps.
--
--   service time  s: learned from the route's mean latency while it is not queueing
--                 (falls fast, rises slowly, so queueing does not inflate it)
--   arrival rate  lambda = completions/s + growth of requests in flight/s over the
--                 panic window (under overload, completions measure capacity, not
--                 demand; the growing backlog is the rest)
--   demand        d = lambda * s requests in flight (Little, 1961)
--   need(d, u)    ceil((d + z * sqrt(d)) / (target_value * u)): headroom
--                 proportional to the Poisson deviation of the demand
--   up            need over the panic window, of Holt's forecast one cold start ahead
--                 (C. C. Holt, 1957; only a rising trend counts), and over the stable
--                 window; applied at once, as Knative's panic mode, but proportional:
--                 the backlog term (observed concurrency at full utilisation) is capped
--                 at up_cap times the Little's-law need, so queueing cannot run away
--   down          the highest need over the last down_window seconds at the lower
--                 utilisation down_utilization (hysteresis), only after hold seconds
--                 without a scale-up, at most down_step of the count per step and one
--                 step every down_every seconds
--   zero          asked for only when the target's min is 0 and nothing has arrived
--                 or been in flight for idle_grace seconds
--
-- config keys:
--   target            the target to scale (required)
--   route             the route's window key (default: the target's name)
--   target_value      requests one replica serves at once (required, > 0)
--   utilization       fraction of target_value to fill when scaling up (default 0.85)
--   down_utilization  fraction to size for when scaling down (default 0.75)
--   z                 headroom in standard deviations of the demand (default 1)
--   cold_start        seconds a new replica takes to serve (default 10)
--   panic_window      seconds of the short window (default 6)
--   stable_window     seconds of the long window (default 60)
--   up_cap            cap of the backlog term over the Little's-law need (default 1.5)
--   down_window       seconds of recommendations a scale-down considers (default 180)
--   hold              seconds after a scale-up before any scale-down (default 150)
--   down_step         largest fraction of the count removed at once (default 0.25)
--   down_every        seconds between scale-down steps (default 30)
--   idle_grace        seconds without traffic before scaling to zero (default 60)
--   alpha, beta       Holt's smoothing of the arrival rate (defaults 0.3 and 0.1)

local cfg = config or {}
local target = cfg.target
local route = cfg.route or target
local tv = cfg.target_value
local util = cfg.utilization or 0.85
local down_util = cfg.down_utilization or 0.75
local z = cfg.z or 1
local cold_start = cfg.cold_start or 10
local panic_window = cfg.panic_window or 6
local stable_window = cfg.stable_window or 60
local up_cap = cfg.up_cap or 1.5
local down_window = cfg.down_window or 180
local hold = cfg.hold or 150
local down_step = cfg.down_step or 0.25
local down_every = cfg.down_every or 30
local idle_grace = cfg.idle_grace or 60
local alpha = cfg.alpha or 0.3
local beta = cfg.beta or 0.1

-- need returns the replicas that serve a demand of d requests in flight at utilisation u.
function need(d, u)
  if d <= 0 then
    return 0
  end
  return math.ceil((d + z * math.sqrt(d)) / (tv * u))
end

-- learn updates the service-time estimate (seconds) with a mean latency x observed
-- while the route was not queueing (or any x when there is no estimate yet).
function learn(state, x, queueing)
  if x <= 0 then
    return
  end
  if state.s == nil then
    state.s = x
  elseif x < state.s then
    state.s = 0.5 * state.s + 0.5 * x
  elseif not queueing then
    state.s = 0.98 * state.s + 0.02 * x
  end
end

-- holt updates the level and trend of the arrival rate and returns the forecast
-- `steps` ticks ahead.
function holt(state, x, steps)
  if state.level == nil then
    state.level, state.trend = x, 0
  else
    local prev = state.level
    state.level = alpha * x + (1 - alpha) * (state.level + state.trend)
    state.trend = beta * (state.level - prev) + (1 - beta) * state.trend
  end
  return state.level + math.max(state.trend, 0) * steps
end

-- arrival_rate estimates the arrival rate over the panic window from completions
-- and the growth of requests in flight, kept in a ring of past readings.
local function arrival_rate(state, w, now)
  state.ring = state.ring or {}
  local ring = state.ring
  local slot = math.floor(now) % panic_window + 1
  local old = ring[slot]
  ring[slot] = { t = now, n = w.in_flight }
  local growth = 0
  if old and now - old.t > 0 and now - old.t <= 2 * panic_window then
    growth = (w.in_flight - old.n) / (now - old.t)
  end
  return math.max(w.rps + growth, 0)
end

-- remember keeps one recommendation per second for down_window seconds, in a ring,
-- and returns the highest.
local function remember(state, now, n)
  state.recs = state.recs or {}
  local recs = state.recs
  local sec = math.floor(now)
  recs[sec % down_window + 1] = { sec, n }
  local best = n
  for i = 1, down_window do
    local r = recs[i]
    if r and sec - r[1] < down_window and r[2] > best then
      best = r[2]
    end
  end
  return best
end

function on_tick(m, state)
  local t = m.target(target)
  if t == nil then
    return nil
  end
  local pw = m.route(route, panic_window)
  local sw = m.route(route, stable_window)
  if not pw.ok or not sw.ok then
    return nil
  end
  local now = m.now
  local current = t.replicas
  if current < 0 then
    return nil
  end

  local queueing = pw.concurrency > 0.9 * tv * math.max(current, 1)
  if pw.count > 0 then
    learn(state, pw.mean / 1000, queueing)
  end
  local lambda = arrival_rate(state, pw, now)
  local steps = (cold_start + 2) / math.max(m.tick, 0.05)
  local forecast = 0
  if pw.count == 0 and pw.in_flight == 0 then
    state.level, state.trend, lambda = 0, 0, 0 -- idle: forget the trend
  else
    -- Holt's trend anticipates ramps; a step must not be extrapolated far.
    forecast = math.min(holt(state, lambda, steps), 2 * lambda)
  end

  local up, down
  if state.s then
    local s = state.s
    up = math.max(need(forecast * s, util), need(sw.rps * s, util))
    -- The backlog: requests in flight beyond what the replicas serve, at full
    -- utilisation, capped so that queueing cannot run away.
    local backlog = math.ceil(pw.concurrency / tv)
    up = math.max(up, math.min(backlog, math.ceil(up_cap * math.max(up, 1))))
    down = math.max(need(sw.rps * s, down_util), need(pw.rps * s, down_util))
  else
    -- Nothing served yet (e.g. scaling from zero): requests in flight are the demand.
    up = need(math.max(pw.in_flight, pw.concurrency), util)
    down = up
  end

  -- Traffic at all? Track the last time anything arrived or was in flight.
  if pw.count > 0 or pw.in_flight > 0 or sw.count > 0 then
    state.active = now
  end
  local floor = 1
  if t.min == 0 and (state.active == nil or now - state.active >= idle_grace) then
    floor = 0 -- never had traffic, or idle for the grace period
  end
  up = math.max(up, floor)
  down = math.max(remember(state, now, math.max(down, floor)), floor)

  local n = current
  local why
  if up > current then
    n, why = up, "up"
    state.last_up = now
  elseif down < current and (state.last_up == nil or now - state.last_up >= hold)
      and (state.last_down == nil or now - state.last_down >= down_every) then
    local step = math.max(1, math.floor(current * down_step))
    n = math.max(down, current - step)
    if down == 0 and current - step <= 1 then
      n = 0
    end
    why = "down"
    state.last_down = now
  end
  if why == nil then
    return scale(target, current, "adaptive: hold")
  end
  return scale(target, n, string.format("adaptive %s: lambda %.4g/s, s %.4gs, forecast %.4g/s",
    why, lambda, state.s or 0, forecast))
end

function self_test()
  assert(target, "config.target is required")
  assert(tv and tv > 0, "config.target_value is required")
  assert(util > 0 and util <= 1 and down_util > 0 and down_util <= util, "0 < down_utilization <= utilization <= 1")
  assert(alpha > 0 and alpha <= 1 and beta > 0 and beta <= 1, "alpha and beta must be in (0, 1]")
  assert(down_step > 0 and down_step <= 1, "down_step must be in (0, 1]")
  assert(need(0, util) == 0)
end
