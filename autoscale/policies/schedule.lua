-- schedule: pre-warm a target to a fixed count at given times, for example 15 minutes
-- before a flash sale. It asks for the count from `lead` seconds before each window's
-- start until its end, and makes no action outside the windows. Combine it with a
-- reactive policy (autoscale.Combine in Go, or by returning both actions from one
-- script): the loop takes the larger of several Scale actions for one target.
--
-- config keys:
--   target    the target to scale (required)
--   windows   list of windows (required), each:
--     at        start, Unix seconds (one-off), or
--     daily     start as "HH:MM" UTC (every day)
--     duration  seconds the window lasts after its start (default 3600)
--     lead      seconds to pre-warm before the start (default 900)
--     replicas  the count to hold (required)

local cfg = config or {}
local target = cfg.target
local windows = cfg.windows or {}

local function daily_start(hhmm, now)
  local h, m = string.match(hhmm, "^(%d%d):(%d%d)$")
  assert(h, "daily must be HH:MM")
  local day = now - now % 86400
  return day + tonumber(h) * 3600 + tonumber(m) * 60
end

-- floor_at returns the largest count any window asks for at now, or nil.
function floor_at(now)
  local best
  for _, w in ipairs(windows) do
    local lead, duration = w.lead or 900, w.duration or 3600
    local starts
    if w.daily then
      local s = daily_start(w.daily, now)
      -- Today's window, or yesterday's still running, or tomorrow's pre-warm.
      starts = { s - 86400, s, s + 86400 }
    else
      starts = { w.at }
    end
    for _, s in ipairs(starts) do
      if now >= s - lead and now < s + duration then
        best = math.max(best or 0, w.replicas)
      end
    end
  end
  return best
end

function on_tick(m, state)
  local n = floor_at(m.now)
  if n == nil or m.target(target) == nil then
    return nil
  end
  return scale(target, n, "schedule: pre-warm")
end

function self_test()
  assert(target, "config.target is required")
  assert(#windows > 0, "config.windows is required")
  for i, w in ipairs(windows) do
    assert(w.replicas and w.replicas >= 0, "window " .. i .. ": replicas is required")
    assert((w.at ~= nil) ~= (w.daily ~= nil), "window " .. i .. ": set exactly one of at and daily")
    if w.daily then daily_start(w.daily, 0) end
  end
end
