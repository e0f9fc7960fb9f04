package luabind_test

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
)

func ExampleRuntime_OnRequest() {
	rt, err := luabind.New(luabind.FromString("gate.lua", `
function on_request(req)
  if req.tenant == "" then
    return { status = 401, body = "who are you?" }
  end
  if req:header("X-Batch") == "1" then
    return { priority = -1 }
  end
end`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Close()
	ctx := context.Background()
	d, _ := rt.OnRequest(ctx, &luabind.Request{Path: "/"})
	fmt.Println(d.Reject, d.Status, d.Body)
	d, _ = rt.OnRequest(ctx, &luabind.Request{Path: "/", Tenant: "acme"})
	fmt.Println(d.Reject)
	// Output:
	// true 401 who are you?
	// false
}

func ExampleRuntime_Decide() {
	rt, err := luabind.New(luabind.FromString("policy.lua", `
local as = require("autoscale")
function on_tick(m, state)
  local t = m.target("web")
  local want = math.ceil(t.replicas * config.factor)
  return { as.scale("web", want, "grow") }
end`), luabind.WithConfig(map[string]any{"factor": 1.5}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Close()
	acts, err := rt.Decide(context.Background(), &autoscale.Input{
		Now:     time.Unix(1_700_000_000, 0),
		Targets: []autoscale.TargetState{{Name: "web", Replicas: 3, Desired: 3, Min: 1, Max: 10}},
	})
	fmt.Printf("%+v %v\n", acts, err)
	// Output:
	// [{Target:web Replicas:5 Reason:grow Panic:false}] <nil>
}

func ExampleRuntime_Reload() {
	rt, _ := luabind.New(luabind.FromString("v1.lua", `function on_request(req) end`))
	defer rt.Close()
	err := rt.Reload(luabind.FromString("v2.lua", "function on_request(req)\n  return {\nend"))
	fmt.Println(err)
	name, gen := rt.Script()
	fmt.Println(name, gen)
	// Output:
	// luabind: load v2.lua:3: syntax error near 'end'
	// v1.lua 1
}
