-- target_tracking: the Kubernetes Horizontal Pod Autoscaler's algorithm
-- (pkg/controller/podautoscaler/replica_calculator.go; see
-- https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details).
--
--   desired = ceil(current * observed / target_value)   (per_replica = true: Utilization)
--   desired = ceil(observed / target_value)             (per_replica = false: AverageValue)
--
-- unless the usage ratio is within the tolerance of 1 (1 - tol <= ratio <= 1 + tol,
-- inclusive at both ends), when the count stays. The HPA's
-- stabilisation (300 s down) and default behaviour (up: max of 4 pods or 100% per 15 s;
-- down: 100% per 15 s) are the loop's safety layer, whose defaults are the HPA's
-- (autoscale.Safety). It is the Lua twin of autoscale.TargetTracking.
--
-- config keys:
--   target_value  the figure to hold per replica (required, > 0)
--   targets       list of target names (default: every target of the loop)
--   scope         window scope: "route" (default), "tenant", "backend", "model"
--   key           window key (default: the target's name)
--   signal        "concurrency" (default), "rps", "in_flight", "p99", "mean" (ms), "error_rate"
--   span          seconds of the window to read (default: the whole window)
--   per_replica   true when the figure is already per replica (default false: a total)
--   tolerance     usage-ratio tolerance (default 0.1; 0 for none)
--
-- Units as in the Go twin: target_value is in the signal's unit (ms for p99 and mean,
-- as autoscale.SignalP99 and SignalMean); span is TargetTrackingConfig.Span in seconds.
-- One difference: tolerance = 0 is none here, while Go's zero Tolerance is the default
-- (Go says none with a negative Tolerance).

local cfg = config or {}
local target_value = cfg.target_value
local tolerance = cfg.tolerance or 0.1
local scope = cfg.scope or "route"
local signal = cfg.signal or "concurrency"

-- within is the HPA's tolerance band, inclusive at both ends (replica_calculator.go's
-- Tolerances.isWithin): a ratio of exactly 1 + tol holds.
local function within(ratio, tol)
  return 1 - tol <= ratio and ratio <= 1 + tol
end

-- recommend returns the HPA's count, or nil when it cannot be computed.
function recommend(current, observed, target, tol, per_replica)
  if not (target and target > 0) or observed ~= observed or observed < 0 then
    return nil
  end
  if per_replica then
    if current <= 0 then
      return nil
    end
    local ratio = observed / target
    if within(ratio, tol) then
      return current
    end
    return math.ceil(ratio * current)
  end
  if current > 0 then
    local ratio = observed / (target * current)
    if within(ratio, tol) then
      return current
    end
  end
  return math.ceil(observed / target)
end

local function targets(m)
  return cfg.targets or m.keys("target")
end

function on_tick(m, state)
  local actions = {}
  for _, name in ipairs(targets(m)) do
    local t = m.target(name)
    local w = t and m.scope(scope, cfg.key or name, cfg.span)
    if w and w.ok then
      local n = recommend(t.replicas, w[signal], target_value, tolerance, cfg.per_replica)
      if n then
        actions[#actions + 1] = scale(name, n,
          string.format("target tracking: %s %.4g %s, target %.4g per replica", signal, w[signal],
            cfg.per_replica and "per replica" or "in total", target_value))
      end
    end
  end
  return actions
end

function self_test()
  assert(target_value and target_value > 0, "config.target_value is required")
  assert(recommend(4, 80, 50, 0.1, true) == 7)
  assert(recommend(4, 54, 50, 0.1, true) == 4)
  assert(recommend(4, 320, 50, 0.1, false) == 7)
end
