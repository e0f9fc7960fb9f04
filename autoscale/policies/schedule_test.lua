-- Tests for schedule.lua. The host sets config = {target = "shop", windows = {
-- {at = 1700003600, duration = 1800, lead = 900, replicas = 30},
-- {daily = "12:00", duration = 3600, lead = 600, replicas = 8}}}.
-- The suite's clock starts at 1700000000 (2023-11-14 22:13:20 UTC).

-- go moves the clock to Unix time t. (clock.set takes at most 1e9 seconds, so it
-- cannot take Unix times; move relative to the suite's start instead.)
local function go(t)
  clock.advance(t - clock.now())
end

local function m()
  return fixture{ targets = { shop = { replicas = 3, max = 50 } } }
end

function TestNothingBeforeTheLead()
  assert_eq(decide(m(), {}), {})
end

function TestPrewarmsFifteenMinutesBefore()
  go(1700003600 - 900)
  assert_action(decide(m(), {}), "scale", { target = "shop", replicas = 30 })
  go(1700003600 - 901)
  assert_eq(decide(m(), {}), {})
end

function TestHoldsUntilTheEnd()
  go(1700003600 + 1799)
  assert_action(decide(m(), {}), "scale", { replicas = 30 })
  go(1700003600 + 1800)
  assert_eq(decide(m(), {}), {})
end

function TestDailyWindow()
  local noon = 1700000000 - 1700000000 % 86400 + 86400 + 12 * 3600 -- next day, 12:00 UTC
  go(noon - 600)
  assert_action(decide(m(), {}), "scale", { replicas = 8 })
  go(noon + 3599)
  assert_action(decide(m(), {}), "scale", { replicas = 8 })
  go(noon + 3600)
  assert_eq(decide(m(), {}), {})
end

function TestFloorAt()
  assert_eq(floor_at(1700003600), 30)
  assert_eq(floor_at(1700000000), nil)
end
