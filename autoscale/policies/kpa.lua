-- kpa: Knative's KPA decider (knative.dev/serving pkg/autoscaler/scaling/autoscaler.go;
-- https://knative.dev/docs/serving/autoscaling/kpa-specific/), tick for tick.
-- The Lua twin of autoscale.KPA.
--
-- Every tick, for each target, with ready = max(1, current replicas):
--   stable = ceil(observed over stable_window / (target_value * target_utilization))
--   panic  = ceil(observed over panic_window  / (target_value * target_utilization))
--   both bounded to [floor(ready / max_scale_down_rate), ceil(ready * max_scale_up_rate)]
--   (the lower bound is 0 for a target listed in unreachable), then raised to
--   activation_scale while there is demand.
-- Panic starts (or extends) when panic / ready >= panic_threshold and ends once a whole
-- stable window has passed without it. In panic the count is the larger of the two, and
-- never goes below the panic's highest (the Scale action carries panic = true, so the
-- loop does not scale down either). A target first seen with more than one replica
-- starts in panic, as Knative's decider does when constructed. scale_down_delay, when
-- set, holds the largest count of the delay (in 2 s buckets). The reason reports the
-- excess burst capacity: floor(replicas * target_value - target_burst_capacity - panic
-- demand), 0 when target_burst_capacity is 0, -1 when it is negative (unlimited).
-- On top of the decider, scale_to_zero_grace keeps one replica until demand has been
-- zero that long. A target whose count is unknown (replicas -1) gets no action: the
-- decision is invalid and the scale stays.
--
-- config keys:
--   target_value           per-replica figure at full utilisation (required, > 0)
--   target_utilization     fraction of target_value to aim at (default 0.7)
--   stable_window          seconds (default 60)
--   panic_window           seconds (default 6)
--   panic_threshold        default 2.0
--   max_scale_up_rate      default 1000
--   max_scale_down_rate    default 2
--   activation_scale       least count while there is demand (default 1: none)
--   target_burst_capacity  default 211; 0 reports 0; negative: unlimited (reports -1)
--   scale_down_delay       seconds (default 0: none)
--   unreachable            list of target names that receive no traffic (default none)
--   scale_to_zero_grace    seconds (default 0: none; negative: never ask for zero)
--   targets                list of target names (default: every target)
--   scope, key, signal     where to read the total (default route / target name / "concurrency")
--
-- Units as in the Go twin: target_value is in the signal's unit (ms for a latency, as
-- autoscale.SignalP99); the windows, the delay and the grace are KPAConfig's durations
-- in seconds. An absent key is the default here, and 0 is taken as given, while Go's
-- zero value is the default; the two agree on every key but target_burst_capacity,
-- where Go's nil is the default 211.

local cfg = config or {}

-- kpa_params returns the algorithm's parameters from a config table, with Knative's
-- defaults.
function kpa_params(c)
  local unreachable = {}
  for _, n in ipairs(c.unreachable or {}) do
    unreachable[n] = true
  end
  return {
    target_value = c.target_value,
    utilization = c.target_utilization or 0.7,
    stable_window = c.stable_window or 60,
    panic_window = c.panic_window or 6,
    panic_threshold = c.panic_threshold or 2.0,
    max_up = c.max_scale_up_rate or 1000,
    max_down = c.max_scale_down_rate or 2,
    activation_scale = c.activation_scale or 1,
    tbc = c.target_burst_capacity or 211,
    delay = c.scale_down_delay or 0,
    unreachable = unreachable,
    grace = c.scale_to_zero_grace or 0,
  }
end

local params = kpa_params(cfg)
local scope = cfg.scope or "route"
local signal = cfg.signal or "concurrency"

-- kpa_state returns a target's decider state as Knative constructs it with ready_pods
-- (-1 when unknown, taken as 0): in panic from now when there are more than one.
function kpa_state(now, ready_pods)
  local st = { max_panic_pods = math.max(ready_pods, 0), delay = {} }
  if ready_pods > 1 then
    st.panic_time = now
  end
  return st
end

-- kpa_delayed records n in the scale-down delay window and returns its largest count:
-- the counts of the last ceil(delay / 2) buckets of 2 s.
local function kpa_delayed(st, delay, now, n)
  local buckets = math.ceil(delay / 2)
  local index = math.floor(math.floor(now) / 2)
  local d = st.delay
  while #d > 0 and d[#d].n <= n do
    d[#d] = nil
  end
  while #d > 0 and index - d[1].index >= buckets do
    table.remove(d, 1)
  end
  d[#d + 1] = { index = index, n = n }
  return d[1].n
end

-- kpa_scale is Knative's autoscaler.Scale for one target, then the scale-to-zero
-- grace: p holds the parameters, st is the target's state (from kpa_state), now in
-- seconds, reachable false for a target that receives no traffic. It returns the count
-- (nil when the count of ready pods is unknown: no decision), whether it panics, the
-- stable and panic counts and the excess burst capacity.
function kpa_scale(p, st, now, ready_pods, stable_value, panic_value, reachable)
  if ready_pods < 0 then
    return nil
  end
  if reachable == nil then
    reachable = true
  end
  local ready = math.max(1, ready_pods)
  local up_bound = math.ceil(p.max_up * ready)
  local down_bound = 0
  if reachable then
    down_bound = math.floor(ready / p.max_down)
  end
  local target = p.target_value * p.utilization
  local dspc = math.ceil(stable_value / target)
  local dppc = math.ceil(panic_value / target)
  local stable = math.min(math.max(dspc, down_bound), up_bound)
  local panic = math.min(math.max(dppc, down_bound), up_bound)
  if p.activation_scale > 1 then
    if dspc > 0 and p.activation_scale > stable then
      stable = p.activation_scale
    end
    if dppc > 0 and p.activation_scale > panic then
      panic = p.activation_scale
    end
  end

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

  if reachable and p.delay > 0 then
    desired = kpa_delayed(st, p.delay, now, desired)
  end

  local ebc = -1
  if p.tbc == 0 then
    ebc = 0
  elseif p.tbc > 0 then
    ebc = math.floor(ready_pods * p.target_value - p.tbc - panic_value)
  end

  if stable_value > 0 or panic_value > 0 or st.last_active == nil then
    st.last_active = now
  end
  if desired == 0 and ready_pods > 0 and p.grace ~= 0 and (p.grace < 0 or now - st.last_active < p.grace) then
    desired = 1
  end
  return desired, st.panic_time ~= nil, stable, panic, ebc
end

function on_tick(m, state)
  local actions = {}
  for _, name in ipairs(cfg.targets or m.keys("target")) do
    local t = m.target(name)
    local key = cfg.key or name
    if t then
      state[name] = state[name] or kpa_state(m.now, t.replicas)
    end
    local sw = t and t.replicas >= 0 and m.scope(scope, key, params.stable_window)
    local pw = sw and m.scope(scope, key, params.panic_window)
    if sw and sw.ok and pw.ok then
      local n, panicking, s, p, ebc = kpa_scale(params, state[name], m.now, t.replicas, sw[signal], pw[signal],
        not params.unreachable[name])
      local mode = panicking and "panic" or "stable"
      actions[#actions + 1] = scale(name, n,
        string.format("kpa %s: %s in total, stable %.4g -> %d replicas, panic %.4g -> %d; target %.4g per replica; excess burst capacity %d",
          mode, signal, sw[signal], s, pw[signal], p, params.target_value, ebc),
        { panic = panicking })
    end
  end
  return actions
end

function self_test()
  assert(params.target_value and params.target_value > 0, "config.target_value is required")
  assert(params.panic_window <= params.stable_window, "panic_window must not exceed stable_window")
  assert(params.panic_threshold > 1 and params.max_up > 1 and params.max_down > 1, "threshold and rates must be > 1")
  assert(params.activation_scale >= 0 and params.delay >= 0 and params.delay <= 3600, "activation_scale and scale_down_delay out of range")
end
