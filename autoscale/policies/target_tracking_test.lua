-- Tests for target_tracking.lua. The host sets config = {target_value = 50, per_replica = true,
-- signal = "concurrency"} (see autoscale's policies_lua_test.go).

function TestHPAAnchorFourPodsAt80Percent()
  -- The HPA documentation's case: 4 ready pods averaging 80% against a 50% target → 7.
  local m = fixture{
    targets = { web = { replicas = 4, max = 20 } },
    routes = { web = { concurrency = 80 } },
  }
  assert_action(decide(m, {}), "scale", { target = "web", replicas = 7 })
end

function TestWithinToleranceKeepsTheCount()
  local m = fixture{
    targets = { web = { replicas = 4 } },
    routes = { web = { concurrency = 54 } },
  }
  assert_action(decide(m, {}), "scale", { target = "web", replicas = 4 })
end

function TestScalesDown()
  local m = fixture{
    targets = { web = { replicas = 10 } },
    routes = { web = { concurrency = 20 } },
  }
  assert_action(decide(m, {}), "scale", { target = "web", replicas = 4 })
end

function TestMissingWindowMakesNoAction()
  local m = fixture{ targets = { web = { replicas = 4 } } }
  assert_eq(decide(m, {}), {})
end

function TestRecommendTotal()
  assert_eq(recommend(4, 320, 50, 0.1, false), 7)
  assert_eq(recommend(0, 120, 50, 0.1, false), 3)
  assert_eq(recommend(0, 80, 50, 0.1, true), nil)
end
