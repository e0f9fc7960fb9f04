-- kpa: the Knative Pod Autoscaler's algorithm (knative.dev/serving
-- pkg/autoscaler/scaling/autoscaler.go; https://knative.dev/docs/serving/autoscaling/kpa-specific/).
-- The Lua twin of autoscale.KPA.
--
-- Every tick, for each target, with ready = max(1, current replicas):
--   stable = ceil(observed over stable_window / (target_value * target_utilization))
--   panic  = ceil(observed over panic_window  / (target_value * target_utilization))
--   both bounded to [floor(ready / max_scale_down_rate), ceil(ready * max_scale_up_rate)].
-- Panic starts (or extends) when panic / ready >= panic_threshold and ends once a whole
-- stable window has passed without it. In panic the count is the larger of the two, and
-- never goes down (the Scale action carries panic = true, so the loop does not scale
-- down either). Zero is asked for only after demand has been zero for scale_to_zero_grace.
--
-- config keys:
--   target_value         per-replica figure at full utilisation (required, > 0)
--   target_utilization   fraction of target_value to aim at (default 0.7)
--   stable_window        seconds (default 60)
--   panic_window         seconds (default 6)
--   panic_threshold      default 2.0
--   max_scale_up_rate    default 1000
--   max_scale_down_rate  default 2
--   scale_to_zero_grace  seconds (default 30; negative: never ask for zero)
--   targets              list of target names (default: every target)
--   scope, key, signal   where to read the total (default route / target name / "concurrency")
--
-- Units as in the Go twin: target_value is in the signal's unit (ms for a latency, as
-- autoscale.SignalP99); the windows and the grace are KPAConfig's durations in seconds.
-- One difference: an absent key is the default here, and 0 is taken as given, while Go's
-- zero value is the default: scale_to_zero_grace = 0 asks for zero at once, where Go's
-- zero ScaleToZeroGrace is 30 s.

local cfg = config or {}

-- kpa_params returns the algorithm's parameters from a config table, with Knative's
-- defaults.
function kpa_params(c)
  return {
    target_value = c.target_value,
    utilization = c.target_utilization or 0.7,
    stable_window = c.stable_window or 60,
    panic_window = c.panic_window or 6,
    panic_threshold = c.panic_threshold or 2.0,
    max_up = c.max_scale_up_rate or 1000,
    max_down = c.max_scale_down_rate or 2,
    grace = c.scale_to_zero_grace or 30,
  }
end

local params = kpa_params(cfg)
local scope = cfg.scope or "route"
local signal = cfg.signal or "concurrency"

-- kpa_scale is Knative's Autoscaler.Scale for one target: p holds the parameters, st is
-- the target's state table (panic_time, max_panic_pods, last_active), now in seconds. It
-- returns the count, whether it panics, and the stable and panic counts.
function kpa_scale(p, st, now, ready_pods, stable_value, panic_value)
  local ready = math.max(1, ready_pods)
  local up_bound = math.ceil(p.max_up * ready)
  local down_bound = math.floor(ready / p.max_down)
  local target = p.target_value * p.utilization
  local dspc = math.ceil(stable_value / target)
  local dppc = math.ceil(panic_value / target)
  local stable = math.min(math.max(dspc, down_bound), up_bound)
  local panic = math.min(math.max(dppc, down_bound), up_bound)

  local over = dppc / ready >= p.panic_threshold
  if over then
    st.panic_time = now -- begin or extend the panic
  elseif st.panic_time and st.panic_time + p.stable_window < now then
    st.panic_time = nil -- the surge has reached the stable window
    st.max_panic_pods = 0
  end

  local desired = stable
  if st.panic_time then
    desired = math.max(desired, panic)
    st.max_panic_pods = math.max(st.max_panic_pods or 0, desired)
    desired = st.max_panic_pods
  end

  if stable_value > 0 or panic_value > 0 or st.last_active == nil then
    st.last_active = now
  end
  if desired == 0 and ready_pods > 0 and (p.grace < 0 or now - st.last_active < p.grace) then
    desired = 1
  end
  return desired, st.panic_time ~= nil, stable, panic
end

function on_tick(m, state)
  local actions = {}
  for _, name in ipairs(cfg.targets or m.keys("target")) do
    local t = m.target(name)
    local key = cfg.key or name
    local sw = t and m.scope(scope, key, params.stable_window)
    local pw = t and m.scope(scope, key, params.panic_window)
    if sw and sw.ok and pw.ok then
      state[name] = state[name] or {}
      local n, panicking, s, p = kpa_scale(params, state[name], m.now, t.replicas, sw[signal], pw[signal])
      local mode = panicking and "panic" or "stable"
      actions[#actions + 1] = scale(name, n,
        string.format("kpa %s: %s in total, stable %.4g -> %d replicas, panic %.4g -> %d; target %.4g per replica",
          mode, signal, sw[signal], s, pw[signal], p, params.target_value),
        { panic = panicking })
    end
  end
  return actions
end

function self_test()
  assert(params.target_value and params.target_value > 0, "config.target_value is required")
  assert(params.panic_window <= params.stable_window, "panic_window must not exceed stable_window")
  assert(params.panic_threshold > 1 and params.max_up > 1 and params.max_down > 1, "threshold and rates must be > 1")
end
