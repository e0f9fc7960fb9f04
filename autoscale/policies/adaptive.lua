-- adaptive: the recommended default. It sizes a target by Little's law on the offered
-- load, reacts to rises at once, anticipates ramps, keeps headroom for the surprises it
-- has seen, steps down only when that headroom allows, and wakes from zero on the first
-- request, so that it neither lags a surge nor flaps.
--
--   service time  s: learned from the route's mean latency while it is not queueing
--                 (falls fast, rises slowly, so queueing does not inflate it); the
--                 config's service_time, when given, is the estimate until then
--   slowing       a service whose replicas slow when run hot (contention, GC, a
--                 shared cache): while the serving replicas are full (their slots
--                 busy over the panic window, the count unchanged for a cold start
--                 and a panic window, no request canceled or failed, no backlog of
--                 more than 4 times the slots), their completions are
--                 what they can serve, queueing aside, and Little's law gives the
--                 service time they show full: target_value * replicas /
--                 completions/s. Seen above slow_ratio times the learned one on 3
--                 ticks in a row, it is kept (smoothed) and every size below uses it,
--                 so the service is sized by its observed concurrency and not run
--                 hot again; a service that serves its nominal rate when full never
--                 shows it
--   arrival rate  lambda = completions/s + growth of requests in flight/s over the
--                 panic window, or over the time since the route was last idle when
--                 that is shorter, or over the span of the fastest significant rise
--                 within it (under overload, completions measure capacity, not
--                 demand; the growing backlog is the rest; after idleness the growth
--                 is all there is)
--   demand        d = lambda * s requests in flight (Little, 1961)
--   need(d, u)    ceil((d + z * sqrt(d)) / (target_value * u)): the requests in flight
--                 of a steady load are Poisson-distributed (an M/G/inf system), so the
--                 headroom for their fluctuation is z standard deviations, sqrt(d):
--                 square-root staffing (Halfin & Whitt, 1981). That headroom is the
--                 only one a steady load gets: utilization defaults to 1 (fill the
--                 replicas' slots; the sqrt(d) term keeps the queueing short), so a
--                 smooth load is not paid for twice
--   noise         sqrt(lambda / panic_window): the standard deviation of a Poisson
--                 rate counted over the panic window. Every estimate below counts only
--                 what stands out of it, so that noise neither scales up nor holds
--                 replicas
--   forecast      lambda extrapolated linearly one cold start ahead, by the median of
--                 its rises from second to second over the last cold start (once a
--                 whole cold start of readings is in), less trend_z standard errors
--                 of that median (from the rises' median absolute deviation): a ramp
--                 (rising every second, above the noise) is anticipated, a step
--                 (rising in one or two seconds) and the random rises of a flat or
--                 slowly moving load are not
--   surprise      how far lambda exceeds the forecast made for it one cold start
--                 earlier: the load a cold start could not have prepared for, counted
--                 only when it exceeds 3 standard deviations of the noise. Its largest
--                 value over the last burst_memory seconds is the headroom kept when
--                 scaling down, at most burst_cap times lambda: smooth load (a trend
--                 the forecast follows) keeps none, bursty load keeps room for the
--                 bursts it has seen, undiminished while they recur within
--                 burst_memory, and a one-off spike many times the load's size is not
--                 held after it ends
--   up            need((max(lambda, forecast) + backlog / max(panic_window, s)) * s,
--                 utilization), at most up_cap times the rate's need alone; the
--                 backlog is the queue the new replicas will find when ready (requests
--                 in flight beyond those in service, plus arrivals beyond what the
--                 replicas serve, second by second over the next cold start), drained
--                 within a panic window (or a service time, when longer: a request
--                 takes s however many slots wait for it); applied at once, as
--                 Knative's panic mode, but proportional. The replicas serving a
--                 second are those asked for at least a cold start before it (the
--                 fewest the count has been since): replicas still starting serve
--                 nothing, so a jump keeps adding to the backlog until they are
--                 ready, and those already asked for stop adding to it once they
--                 are, so that each tick of a jump does not ask again for the queue
--                 the previous one sized. Arrivals that the replicas can serve, or
--                 that exceed it by no more than the noise of lambda, add no
--                 backlog: the in-flight count rising to a new level under a burst
--                 the replicas absorb is not a queue
--   panic         lambda at least panic_ratio times the completions/s over the
--                 stable_window (a jump the load has not shown within it): up is not
--                 capped by up_cap, so an order-of-magnitude jump gets the replicas
--                 its backlog needs in one step rather than three times the count at
--                 a time, and up also sizes for lambda extrapolated by the trend of
--                 the panic window alone (a ramp that began within the last cold
--                 start), at most panic_ratio times lambda
--   down          need((lambda + surprise) * s, down_utilization), the highest over
--                 the last down_window seconds (that maximum also covers the noise of
--                 lambda, so a step down is not reversed by it); applied only down_delay
--                 seconds after the last scale-up (longer than a flap window, so an up
--                 is never reversed within it) and once a whole down_window of
--                 recommendations is in (at the start there is none to step down on),
--                 one step every down_step_interval seconds, each removing at most
--                 down_step_fraction of the count; when the need is at most half the
--                 count (the load fell: a spike ended),
--                 one step every down_fast_interval seconds, each halving the count,
--                 as Knative's scale-down rate of 2
--   rebound       an up within down_delay of a step down reversed it (the load came
--                 back: a daily trough, a recurring lull); the count before that
--                 step is then a floor for the steps down, for burst_memory seconds,
--                 renewed each time it holds one, so that the next trough is held
--                 through rather than flapped
--   zero          when the target's min is 0 and nothing has arrived or been in
--                 flight for idle_to_zero seconds (and down_delay has passed since the
--                 last scale-up), straight to zero; the first request wakes it with
--                 the replicas its arrival rate needs. Nothing in the library holds
--                 requests meanwhile (there is no activator): with no replica ready
--                 the balancer's proxy answers 503 with Retry-After, and those
--                 requests count in the rate that wakes the target. The simulator
--                 models a host whose requests wait for the first replica instead.
--
-- config keys (times in seconds):
--   target              the target to scale (required)
--   route               the route's window key (default: the target's name)
--   target_value        requests one replica serves at once (required, > 0)
--   slow_ratio          service time shown full, over the learned one, that says
--                       the service slows under load (default 1.5)
--   service_time        mean service time of a request, the estimate until one is
--                       learned (default: none; until one is learned the requests in
--                       flight are the demand)
--   batching            true when a replica batches the requests it serves (a
--                       language model with continuous batching): service_time is
--                       then its latency at a full batch, what a replica's capacity is
--                       measured by, and the floor of the estimate (a partial batch is
--                       faster, and sizing by it fills the batches until they slow)
--                       (default false)
--   utilization         fraction of target_value to fill when scaling up (default 1)
--   down_utilization    fraction to size for when scaling down (default: utilization)
--   z                   headroom in standard deviations of the demand (default 1)
--   trend_z             standard errors a trend must clear to be extrapolated (default 1)
--   cold_start          time a new replica takes to serve (default 10)
--   panic_window        span of the panic window (default 6)
--   short_window        span of the window that sees a step of completions (default 2)
--   up_cap              cap of up over the rate's need, outside panic (default 3)
--   panic_ratio         lambda over the stable window's completions/s that is a panic
--                       (default 2, Knative's panic threshold)
--   stable_window       span of the window a panic is measured against (default 60)
--   burst_cap           cap of the burst headroom, in multiples of lambda (default 2)
--   down_window         time of recommendations a scale-down considers (default 60)
--   down_delay          time after a scale-up before any scale-down (default 125)
--   down_step_interval  time between scale-down steps (default 30)
--   down_fast_interval  time between halving steps once the need is at most half the
--                       count (default 10)
--   down_step_fraction  largest fraction of the count removed at once (default 0.25)
--   burst_memory        how long a surprise is remembered (default 600)
--   idle_to_zero        time without traffic before scaling to zero (default 60)
--
-- On a compressed timescale (a demo), shorten the times together: down_delay,
-- down_window, down_step_interval, down_fast_interval, burst_memory, idle_to_zero.

local cfg = config or {}
local target = cfg.target
local route = cfg.route or target
local tv = cfg.target_value
local service_time = cfg.service_time
local batching = cfg.batching or false
local util = cfg.utilization or 1
local down_util = cfg.down_utilization or util
local z = cfg.z or 1
local trend_z = cfg.trend_z or 1
local cold_start = cfg.cold_start or 10
local panic_window = cfg.panic_window or 6
local short_window = cfg.short_window or 2
local up_cap = cfg.up_cap or 3
local panic_ratio = cfg.panic_ratio or 2
local stable_window = cfg.stable_window or 60
local burst_cap = cfg.burst_cap or 2
local down_fast_interval = cfg.down_fast_interval or 10
local down_window = cfg.down_window or 60
local down_delay = cfg.down_delay or 125
local down_step_interval = cfg.down_step_interval or 30
local down_step_fraction = cfg.down_step_fraction or 0.25
local burst_memory = cfg.burst_memory or 600
local idle_to_zero = cfg.idle_to_zero or 60
-- ring sizes, in whole seconds (the surprise's ring in 10 s buckets)
local panic_n = math.max(math.ceil(panic_window), 1)
local down_n = math.max(math.ceil(down_window), 1)
local memory_n = math.max(math.ceil(burst_memory / 10), 1)
-- a surprise counts when it exceeds this many standard deviations of the noise
local surprise_z = 3
-- the forecast's horizon: a cold start and a tick
local horizon = cold_start + 1
local horizon_n = math.ceil(horizon) + 1
-- a service slows under load when its replicas, full (concurrency at least slow_full
-- of their slots), serve fewer than 1 / slow_ratio of the requests per second that
-- the learned service time gives, over at least slow_count requests, on slow_ticks
-- ticks in a row, with at most slow_queue times the slots in flight
local slow_ratio = cfg.slow_ratio or 1.5
local slow_full = 0.95
local slow_count = 50
local slow_ticks = 3
local slow_queue = 4

-- need returns the replicas that serve a demand of d requests in flight at utilisation u.
function need(d, u)
  if d <= 0 then
    return 0
  end
  return math.ceil((d + z * math.sqrt(d)) / (tv * u))
end

-- learn updates the service-time estimate (seconds) with a mean latency x observed
-- while the route was not queueing.
function learn(state, x, queueing)
  if x <= 0 then
    return
  end
  if state.s == nil then
    if not queueing then
      state.s = x
    end
  elseif x < state.s then
    state.s = 0.5 * state.s + 0.5 * x
  elseif not queueing then
    state.s = 0.98 * state.s + 0.02 * x
  end
end

-- median returns the median of a non-empty list, which it sorts.
local function median(xs)
  table.sort(xs)
  local k = #xs
  return (xs[math.floor((k + 1) / 2)] + xs[math.floor(k / 2) + 1]) / 2
end

-- clears returns the median of the first k rises less trend_z standard errors of
-- it, or 0 when that is negative.
local function clears(rises, k)
  local xs = {}
  for i = 1, k do
    xs[i] = rises[i]
  end
  local med = median(xs)
  local dev = {}
  for i = 1, k do
    dev[i] = math.abs(rises[i] - med)
  end
  local se = 1.2533 * 1.4826 * median(dev) / math.sqrt(k)
  return math.max(med - trend_z * se, 0)
end

-- trend keeps one reading of the arrival rate per second over the last horizon
-- seconds and returns the rise per second that counts for a forecast, over the whole
-- horizon and over its last panic_window seconds: the median of the rises from one
-- second to the next, less trend_z standard errors of that median (0 when that is
-- negative; both 0 before a whole horizon of readings), so that a ramp, which rises
-- every second, is extrapolated, and a step, which rises in a second or two, is not,
-- nor are the random rises of a flat load. The standard error of a median of k
-- readings is 1.2533 sigma / sqrt(k), with sigma estimated robustly as 1.4826 times
-- the median absolute deviation.
function trend(state, now, x)
  state.rates = state.rates or {}
  local rates = state.rates
  local sec = math.floor(now)
  rates[sec % horizon_n + 1] = { sec, x }
  local rises = {}
  for ago = 0, horizon_n - 2 do
    local r1 = rates[(sec - ago) % horizon_n + 1]
    local r0 = rates[(sec - ago - 1) % horizon_n + 1]
    if r1 and r0 and r1[1] == sec - ago and r0[1] == sec - ago - 1 then
      rises[#rises + 1] = r1[2] - r0[2]
    end
  end
  if #rises < horizon_n - 1 then
    return 0, 0 -- not a whole horizon of readings yet
  end
  return clears(rises, #rises), clears(rises, math.min(panic_n, #rises))
end

-- arrival_rate estimates the arrival rate from completions and the growth of requests
-- in flight, read from a ring of one reading per second over the last panic_window
-- seconds: the growth since the oldest reading, or, when a shorter span shows a
-- significant rise (by more than one standard deviation of the in-flight count's
-- Poisson noise), the fastest such rise, so that a step is seen on the first tick
-- after it. The ring is emptied while the route is idle, so that after idleness the
-- growth is measured from the last idle tick.
local function arrival_rate(state, w, short, now)
  state.ring = state.ring or {}
  local ring = state.ring
  local n = w.in_flight
  local oldest, fastest
  for i = 1, panic_n do
    local r = ring[i]
    local age = r and now - r.t
    if r and age > 0 and age <= panic_window then
      if oldest == nil or r.t < oldest.t then
        oldest = r
      end
      -- over at least a second: a step between ticks (a wake) that finds a few
      -- requests a millisecond after the last reading is not thousands a second
      local g = (n - r.n - math.sqrt(n + r.n)) / math.max(age, 1)
      if g > 0 and (fastest == nil or g > fastest) then
        fastest = g
      end
    end
  end
  ring[math.floor(now) % panic_n + 1] = { t = now, n = n }
  local growth = 0
  if oldest then
    growth = (n - oldest.n) / math.max(now - oldest.t, 1)
  end
  -- Completions: over the panic window, or over the short window when it is higher
  -- by more than a standard deviation of its Poisson count.
  local done = w.rps
  if short.span > 0 then
    done = math.max(done, (short.count - math.sqrt(short.count)) / short.span)
  end
  return math.max(done + math.max(growth, fastest or growth), 0), done
end

-- surprise records the forecast made now for a cold start ahead, and returns how far
-- lambda exceeds the forecast made for now (0 when there is none).
local function surprise(state, now, lambda, forecast)
  state.preds = state.preds or {}
  local preds = state.preds
  local size = math.ceil(cold_start) + 2
  local sec = math.floor(now)
  local p = preds[sec % size + 1]
  local s = 0
  if p and p[1] == sec then
    s = math.max(lambda - p[2], 0)
  end
  local due = math.floor(now + cold_start)
  preds[due % size + 1] = { due, forecast }
  return s
end

-- memory keeps the largest significant surprise of each 10 s over the last
-- burst_memory seconds, in a ring, and returns the largest.
local function memory(state, now, x)
  state.surprises = state.surprises or {}
  local ring = state.surprises
  local b = math.floor(now / 10)
  local e = ring[b % memory_n + 1]
  if e == nil or e[1] ~= b then
    e = { b, 0 }
    ring[b % memory_n + 1] = e
  end
  e[2] = math.max(e[2], x)
  local best = 0
  for i = 1, memory_n do
    local r = ring[i]
    if r and b - r[1] < memory_n and r[2] > best then
      best = r[2]
    end
  end
  return best
end

-- remember keeps one recommendation per second for down_window seconds, in a ring,
-- and returns the highest.
local function remember(state, now, n)
  state.recs = state.recs or {}
  local recs = state.recs
  local sec = math.floor(now)
  recs[sec % down_n + 1] = { sec, n }
  local best = n
  for i = 1, down_n do
    local r = recs[i]
    if r and sec - r[1] < down_window and r[2] > best then
      best = r[2]
    end
  end
  return best
end

-- serving keeps the count once per second over the last cold start and returns the
-- lowest: the replicas that were asked for at least a cold start ago, which serve now
-- (those asked for since are still starting); and a list whose k-th entry (from 1)
-- is the lowest count over the last k - 1 seconds: the replicas that serve a cold
-- start less k - 1 seconds from now, once those asked for since are ready.
local function serving(state, now, current)
  state.counts = state.counts or {}
  local counts = state.counts
  local size = math.ceil(cold_start) + 1
  local sec = math.floor(now)
  counts[sec % size + 1] = { sec, current }
  local by_age = {}
  for i = 1, size do
    local c = counts[i]
    if c and sec - c[1] <= cold_start then
      by_age[sec - c[1] + 1] = c[2]
    end
  end
  local low, lows = current, {}
  for k = 1, size do
    if by_age[k] and by_age[k] < low then
      low = by_age[k]
    end
    lows[k] = low
  end
  return low, lows
end

-- queued returns the requests that arrive at rate lambda beyond what the replicas
-- serve over the next cold start, second by second, as the replicas already asked
-- for become ready (lows from serving; each replica serves target_value / s a second,
-- the whole at least the completions done): the queue that replicas asked for now
-- find when they are ready.
local function queued(lows, lambda, done, s)
  local q = 0
  lambda = lambda - math.sqrt(lambda / panic_window)
  for t = 0, math.ceil(cold_start) - 1 do
    local k = math.ceil(cold_start) - t + 1
    local r = lows[math.min(k, #lows)]
    q = q + math.max(lambda - math.max(done, r * tv / s), 0)
  end
  return q
end

function on_tick(m, state)
  local t = m.target(target)
  if t == nil then
    return nil
  end
  local pw = m.route(route, panic_window)
  if not pw.ok then
    return nil
  end
  local now = m.now
  local tick = math.max(m.tick, 0.05)
  local current = t.replicas
  if current < 0 then
    return nil
  end
  if state.s == nil and service_time and service_time > 0 then
    state.s = service_time
  end

  local idle = pw.count == 0 and pw.in_flight == 0
  local ready, lows = serving(state, now, current)
  local queueing = pw.concurrency > 0.9 * tv * math.max(current, 1)
      or (state.s == nil and pw.max_in_flight > 0.9 * tv * math.max(current, 1))
  if pw.count > 0 then
    learn(state, pw.mean / 1000, queueing)
  end

  local lambda, forecast, done, recent = 0, 0, 0, 0
  if idle then
    -- idle: forget the trend and measure the next rise from here
    state.ring = { { t = now, n = 0 } }
  else
    lambda, done = arrival_rate(state, pw, m.route(route, short_window), now)
    local slope
    slope, recent = trend(state, now, lambda)
    forecast = lambda + slope * horizon
  end
  -- A surprise within the noise of lambda is none.
  local sp = surprise(state, now, lambda, forecast)
  if sp <= surprise_z * math.sqrt(lambda / panic_window) then
    sp = 0
  end
  -- The headroom kept for past bursts is at most burst_cap times the load: a spike
  -- many times the load's size is not held for burst_memory after it ends.
  state.peak = math.min(memory(state, now, sp), burst_cap * lambda)

  local up, down
  -- A service that slows under load: while the serving replicas are full (slots
  -- busy over the panic window and now), their completions are what they serve,
  -- queueing aside, and target_value * ready / completions/s is the service time
  -- they show (Little). Judged only once the count has held for a cold start and a
  -- panic window (the window's completions are all those replicas') and with none
  -- canceled or failed (a request its client gave up on held a slot and completed
  -- nothing), and with at most slow_queue times the slots in flight (requests
  -- queue at a replica: a backlog queued at the replicas there before a jump keeps
  -- them busy while the replicas added since serve only the arrivals, so the
  -- completions fall short of the slots without any slowing);
  -- against the config's service_time too, when given, which is the learned
  -- estimate's floor here (a batching model declares its full-batch latency).
  if state.held_count ~= current then
    state.held_count, state.held_since = current, now
  end
  if state.s and ready > 0 and pw.count >= slow_count and pw.rps > 0
      and now - state.held_since >= cold_start + panic_window
      and pw.concurrency >= slow_full * tv * ready and pw.canceled == 0 and pw.error_rate == 0
      and pw.max_in_flight <= slow_queue * tv * ready then
    local shown = tv * ready / pw.rps
    if shown > slow_ratio * math.max(state.s, service_time or 0) and pw.in_flight >= tv * ready then
      state.slow_n = (state.slow_n or 0) + 1
      if state.slow_n >= slow_ticks then
        state.slow_s = state.slow_s and 0.8 * state.slow_s + 0.2 * shown or shown
      end
    else
      state.slow_n = 0
    end
  end
  if state.s then
    -- A batching replica's latency falls with its batch: the full batch's, the
    -- config's service_time, is what its capacity is measured by.
    local s = math.max(state.s, state.slow_s or 0, batching and service_time or 0)
    local rate = math.max(lambda, forecast)
    local rate_need = need(rate * s, util)
    -- The backlog: requests in flight beyond those in service (done * s, by Little's
    -- law) and their Poisson noise, plus what arrives beyond both the completions and
    -- what the replicas serve over the next cold start, as those already asked for
    -- become ready (queued): the queue new replicas find when they are ready, to be
    -- drained within a panic window, or a service time when that is longer (a
    -- request takes s however many slots it has).
    local backlog = math.max(pw.in_flight - done * s - math.sqrt(pw.in_flight), 0)
        + queued(lows, lambda, done, s)
    up = need((rate + backlog / math.max(panic_window, s)) * s, util)
    -- Panic: the rate at least panic_ratio times the stable window's completions (a
    -- jump the load has not shown before; the completions count at least a tenth of
    -- a replica's capacity, so that a trickle after idleness is none); the backlog is
    -- then sized in full.
    local stable = m.route(route, stable_window)
    local panic = stable.ok and lambda >= panic_ratio * math.max(stable.rps, tv / s / 10)
    if panic then
      -- The trend over the panic window alone (a ramp that began within the last cold
      -- start, which the whole window's median does not see yet), at most
      -- panic_ratio times the rate.
      local ahead = math.min(lambda + recent * horizon, panic_ratio * lambda)
      if ahead > rate then
        up = math.max(up, need((ahead + backlog / math.max(panic_window, s)) * s, util))
      end
    else
      up = math.min(up, math.ceil(up_cap * math.max(rate_need, 1)))
    end
    down = need((lambda + state.peak) * s, down_util)
  else
    -- Nothing learned yet (e.g. waking from zero): the requests in flight are the
    -- demand, taken once per cold start (they pile up while replicas start).
    if state.wake == nil or now - state.wake >= cold_start + tick then
      state.wake_need = need(pw.in_flight, util)
      state.wake = now
    end
    up = state.wake_need
    down = up
  end

  -- Traffic at all? Track the last time anything arrived or was in flight.
  if not idle then
    state.active = now
  end
  local floor = 1
  local idle_long = state.active == nil or now - state.active >= idle_to_zero
  if t.min == 0 and idle_long then
    floor = 0 -- never had traffic, or idle long enough
  end
  up = math.max(up, floor)
  down = math.max(remember(state, now, math.max(down, floor)), floor)

  local n = current
  local why
  state.start = state.start or now
  local settled = (state.last_up == nil or now - state.last_up >= down_delay)
      and now - state.start >= down_window
  if up > current then
    n, why = up, "up"
    state.last_up = now
    -- An up within down_delay of a step down reversed it: the load comes back (a
    -- daily trough, a recurring lull). The count before that step is a floor for
    -- burst_memory, renewed each time it holds a step down.
    if state.last_down and now - state.last_down < down_delay and state.down_from then
      state.rebound, state.rebound_until = state.down_from, now + burst_memory
    end
  elseif floor == 0 and current > 0 and settled then
    n, why = 0, "to zero"
    state.last_down = now
  elseif down < current and settled
      and (state.last_down == nil or now - state.last_down >= down_step_interval
        or (down <= current / 2 and now - state.last_down >= down_fast_interval)) then
    local step = math.max(1, math.floor(current * down_step_fraction))
    if down <= current / 2 then
      -- the demand fell under half the count: halve it
      step = math.floor(current / 2)
    end
    n = math.max(down, current - step)
    if state.rebound and now < state.rebound_until and n < state.rebound then
      n = math.min(state.rebound, current)
      state.rebound_until = now + burst_memory
    end
    if n < current then
      why = "down"
      state.last_down, state.down_from = now, current
    end
  end
  if why == nil then
    return scale(target, current, string.format("adaptive: hold: lambda %.4g/s, forecast %.4g/s", lambda, forecast))
  end
  return scale(target, n, string.format("adaptive %s: lambda %.4g/s, s %.4gs, forecast %.4g/s, surprise %.4g/s",
    why, lambda, state.s or 0, forecast, state.peak))
end

function self_test()
  assert(target, "config.target is required")
  assert(tv and tv > 0, "config.target_value is required")
  assert(util > 0 and util <= 1 and down_util > 0 and down_util <= util, "0 < down_utilization <= utilization <= 1")
  assert(down_step_fraction > 0 and down_step_fraction <= 1, "down_step_fraction must be in (0, 1]")
  assert(cold_start >= 0 and panic_window >= 1 and down_window >= 1,
    "cold_start >= 0, panic_window and down_window >= 1")
  assert(trend_z >= 0 and up_cap >= 1, "trend_z >= 0 and up_cap >= 1")
  assert(slow_ratio > 1, "slow_ratio must be > 1")
  assert(panic_ratio > 1 and stable_window >= 1 and burst_cap > 0,
    "panic_ratio > 1, stable_window >= 1 and burst_cap > 0")
  assert(down_fast_interval >= 0, "down_fast_interval >= 0")
  assert(down_delay >= 0 and down_step_interval >= 0 and idle_to_zero >= 0 and burst_memory > 0,
    "down_delay, down_step_interval, idle_to_zero >= 0 and burst_memory > 0")
  assert(service_time == nil or service_time > 0, "service_time must be > 0")
  assert(not batching or service_time, "batching needs service_time")
  assert(need(0, util) == 0)
end
