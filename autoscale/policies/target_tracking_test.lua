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

function TestToleranceBandIsInclusive()
  -- replica_calculator.go's band: 1 - t <= ratio <= 1 + t, so exactly 1.1 and 0.9 hold.
  assert_eq(recommend(10, 55, 50, 0.1, true), 10)
  assert_eq(recommend(10, 45, 50, 0.1, true), 10)
  assert_eq(recommend(10, 550, 50, 0.1, false), 10)
  assert_eq(recommend(10, 450, 50, 0.1, false), 10)
  assert_eq(recommend(10, 55.01, 50, 0.1, true), 12)
  assert_eq(recommend(10, 44.99, 50, 0.1, true), 9)
end

function TestUpstreamReplicaCalcCases()
  -- pkg/controller/podautoscaler/replica_calculator_test.go, every pod ready.
  assert_eq(recommend(5, 28, 50, 0.1, true), 3)                            -- ReplicaCalcScaleDown
  assert_eq(recommend(3, 102, 100, 0.1, true), 3)                          -- ReplicaCalcTolerance
  assert_eq(recommend(3, (20000 + 21000 + 21000) / 3, 20000, 0.1, true), 3) -- ReplicaCalcToleranceCM
  assert_eq(recommend(3, 20666, 20000, 0.1, true), 3)                      -- ReplicaCalcToleranceCMObject
  assert_eq(recommend(5, 8600, 2867, 0.1, false), 3)                       -- ReplicaCalcScaleDownPerPodCMExternal
end
