-- access.lua: the demo gateway's access phase (on_request), run for every request
-- before admission and balancing.
--
-- Free-tier requests get the lowest priority, so that the admission queue serves paying
-- tenants first: the gateway admits at most what the fleet serves at its largest, and
-- once that is reached requests wait in a priority queue (main.go's newAdmission;
-- TestPriorityQueue). Requests carrying "X-Debug: block" are turned away with 403.
--
-- The decisions are tables built once, when the script loads, and returned as they
-- are: the host only reads a decision, and a table built per request would cost two
-- tables and their hash parts on every free-tier request (BenchmarkFrontend/free).

local blocked = {status = 403, body = "blocked by access.lua"}
local free_tier = {priority = -1, headers = {["X-Tier"] = "free"}}

function on_request(req)
  if req:header("X-Debug") == "block" then
    return blocked
  end
  if req.tenant == "free" then
    return free_tier
  end
end
