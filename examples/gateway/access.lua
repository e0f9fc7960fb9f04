-- access.lua: the demo gateway's access phase (on_request), run for every request
-- before admission and balancing.
--
-- Free-tier requests get the lowest priority, so that the admission queue serves paying
-- tenants first: the gateway admits at most what the fleet serves at its largest, and
-- once that is reached requests wait in a priority queue (main.go's newAdmission;
-- TestPriorityQueue). Requests carrying "X-Debug: block" are turned away with 403.

function on_request(req)
  if req:header("X-Debug") == "block" then
    return {status = 403, body = "blocked by access.lua"}
  end
  if req.tenant == "free" then
    return {priority = -1, headers = {["X-Tier"] = "free"}}
  end
end
