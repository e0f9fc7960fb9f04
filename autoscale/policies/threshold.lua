-- threshold: the seed article's rule. When a route's average latency stays above up_ms
-- for `breaches` consecutive ticks, add `step` replicas; when it stays below down_ms (a
-- lower threshold: hysteresis) for as many ticks, remove `down_step`. No change within
-- `cooldown` seconds of the last one. Between the thresholds nothing happens and both
-- counters reset.
--
-- config keys:
--   target     the target to scale (required)
--   route      the route's window key (default: the target's name)
--   signal     "mean" (default, ms), "p50", "p90", "p99" (ms), "rps", "concurrency", "error_rate"
--   span       seconds of window per observation (default: one tick)
--   up_ms      scale-up threshold (required)
--   down_ms    scale-down threshold (default: up_ms / 2; must be below up_ms)
--   breaches   consecutive observations needed (default 3)
--   step       replicas added (default 1)
--   down_step  replicas removed (default 1)
--   cooldown   seconds after a change (default 60)

local cfg = config or {}
local target = cfg.target
local route = cfg.route or target
local signal = cfg.signal or "mean"
local up = cfg.up_ms
local down = cfg.down_ms or (up and up / 2)
local breaches = cfg.breaches or 3
local step = cfg.step or 1
local down_step = cfg.down_step or 1
local cooldown = cfg.cooldown or 60

function on_tick(m, state)
  local t = m.target(target)
  local w = m.route(route, cfg.span or math.max(m.tick, 1))
  if t == nil or not w.ok or w.count == 0 then
    state.above, state.below = 0, 0
    return nil
  end
  local v = w[signal]
  if v > up then
    state.above, state.below = (state.above or 0) + 1, 0
  elseif v < down then
    state.above, state.below = 0, (state.below or 0) + 1
  else
    state.above, state.below = 0, 0
  end
  if state.last_change and m.now - state.last_change < cooldown then
    return nil
  end
  local n
  if state.above >= breaches then
    n = math.min(t.replicas + step, t.max)
  elseif state.below >= breaches then
    n = math.max(t.replicas - down_step, t.min)
  end
  if n == nil or n == t.replicas then
    return nil
  end
  state.above, state.below, state.last_change = 0, 0, m.now
  return scale(target, n, string.format("threshold: %s %.4g for %d ticks", signal, v, breaches))
end

function self_test()
  assert(target, "config.target is required")
  assert(up and up > 0, "config.up_ms is required")
  assert(down < up, "down_ms must be below up_ms")
  assert(breaches >= 1 and step >= 1 and down_step >= 1, "breaches and steps must be >= 1")
end
