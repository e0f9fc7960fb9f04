-- Tests for policy.lua, run by luatest (and by luabind's own Go tests).

function TestScalesToTrackRPS()
  local m = fixture{
    targets = { web = { replicas = 4, min = 1, max = 20 } },
    routes = { ["/checkout"] = { rps = 450, count = 27000, p99 = 120 } },
  }
  local acts = decide(m, {})
  assert_eq(#acts, 1)
  assert_action(acts, "scale", { target = "web", replicas = 5, panic = false })
end

function TestNoActionAtTarget()
  local m = fixture{
    targets = { web = { replicas = 3 } },
    routes = { ["/checkout"] = { rps = 300, count = 18000, p99 = 100 } },
  }
  assert_eq(decide(m, {}), {})
end

function TestPanicWindowScalesUpAndHolds()
  local state = {}
  local m = fixture{
    targets = { web = { replicas = 2, max = 50 } },
    routes = { ["/checkout"] = { rps = 150, count = 9000, by_span = { [6] = { rps = 900 } } } },
  }
  local acts = decide(m, state)
  assert_action(acts, "scale", { replicas = 9, panic = true })
  assert_eq(state.panic_since, clock.now())

  -- The burst is over, but panic mode holds the count for 60 s.
  clock.advance(30)
  m = fixture{
    targets = { web = { replicas = 9, max = 50 } },
    routes = { ["/checkout"] = { rps = 150, count = 9000 } },
  }
  assert_eq(decide(m, state), {})
  clock.advance(31)
  acts = decide(fixture{
    targets = { web = { replicas = 9, max = 50 } },
    routes = { ["/checkout"] = { rps = 150, count = 9000 } },
  }, state)
  assert_action(acts, "scale", { replicas = 2, panic = false })
end

function TestShedsAfterThreeSlowTicks()
  local state = {}
  local slow = fixture{
    targets = { web = { replicas = 1 } },
    routes = { ["/checkout"] = { rps = 50, count = 3000, p99 = 900 } },
  }
  assert_no_action(decide(slow, state), "shed")
  assert_no_action(decide(slow, state), "shed")
  local a = assert_action(decide(slow, state), "shed", { route = "/checkout", fraction = 0.2 })
  assert_eq(a.retry_after, 2)
  local fast = fixture{
    targets = { web = { replicas = 1 } },
    routes = { ["/checkout"] = { rps = 50, count = 3000, p99 = 80 } },
  }
  assert_action(decide(fast, state), "shed", { fraction = 0 })
end

function TestEjectsTheBackendFailingMost()
  local function with(rates)
    local backends = {}
    for ip, rate in pairs(rates) do
      backends[ip] = { rps = 100, count = 6000, error_rate = rate }
    end
    return fixture{
      targets = { web = { replicas = 3 } },
      routes = { ["/checkout"] = { rps = 300, count = 18000, p99 = 100 } },
      backends = backends,
    }
  end
  local acts = decide(with{ ["10.0.0.1"] = 0.02, ["10.0.0.2"] = 0.8, ["10.0.0.3"] = 0.6 }, {})
  assert_eq(#acts, 1)
  assert_action(acts, "eject", { pool = "web", backend = "10.0.0.2", seconds = 30 })
  assert_eq(decide(with{ ["10.0.0.1"] = 0.02, ["10.0.0.2"] = 0.4 }, {}), {})
end

function TestRejectsAnonymousAPI()
  assert_eq(on_request(request{ path = "/api/orders" }), { status = 401, body = "tenant required" })
  assert_eq(on_request(request{ path = "/api/orders", tenant = "acme" }), nil)
end

function TestCanaryHeader()
  local d = on_request(request{ path = "/", tenant = "acme", headers = { ["x-canary"] = "1" } })
  assert_eq(d.route, "/checkout-canary")
end
