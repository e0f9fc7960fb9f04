-- predictive: Holt's linear trend method (C. C. Holt, "Forecasting seasonals and trends
-- by exponentially weighted moving averages", 1957) on a route's request rate,
-- forecasting one cold start ahead, so replicas are ready when the load arrives:
--
--   level_t = alpha * rps_t + (1 - alpha) * (level_{t-1} + trend_{t-1})
--   trend_t = beta * (level_t - level_{t-1}) + (1 - beta) * trend_{t-1}
--   forecast = level_t + trend_t * (cold_start / tick)
--   desired = ceil(max(forecast, rps_t) / rps_per_replica)
--
-- The forecast never lowers the count below what the current rate needs.
--
-- config keys:
--   target           the target to scale (required)
--   route            the route's window key (default: the target's name)
--   rps_per_replica  the rate one replica serves (required, > 0)
--   alpha            level smoothing, (0, 1] (default 0.5)
--   beta             trend smoothing, (0, 1] (default 0.3)
--   cold_start       seconds a new replica takes to serve (default 60)
--   span             seconds of window per observation (default: one tick)

local cfg = config or {}
local target = cfg.target
local route = cfg.route or target
local per_replica = cfg.rps_per_replica
local alpha = cfg.alpha or 0.5
local beta = cfg.beta or 0.3
local cold_start = cfg.cold_start or 60

-- holt updates state (level, trend) with an observation x and returns the forecast
-- `steps` observations ahead.
function holt(state, x, steps)
  if state.level == nil then
    state.level, state.trend = x, 0
  else
    local prev = state.level
    state.level = alpha * x + (1 - alpha) * (state.level + state.trend)
    state.trend = beta * (state.level - prev) + (1 - beta) * state.trend
  end
  return state.level + state.trend * steps
end

function on_tick(m, state)
  local t = m.target(target)
  local w = m.route(route, cfg.span or math.max(m.tick, 1))
  if t == nil or not w.ok then
    return nil
  end
  local steps = cold_start / math.max(m.tick, 0.05)
  local forecast = holt(state, w.rps, steps)
  local n = math.ceil(math.max(forecast, w.rps) / per_replica)
  return scale(target, n, string.format("predictive: rps %.4g, forecast %.4g in %ds", w.rps, forecast, cold_start))
end

function self_test()
  assert(target, "config.target is required")
  assert(per_replica and per_replica > 0, "config.rps_per_replica is required")
  assert(alpha > 0 and alpha <= 1 and beta > 0 and beta <= 1, "alpha and beta must be in (0, 1]")
  local s = {}
  holt(s, 10, 1)
  assert(holt(s, 10, 5) == 10, "a flat series forecasts itself")
end
