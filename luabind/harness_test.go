package luabind_test

import (
	"os"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind/luatest"
)

func TestExamplePolicyLuaTests(t *testing.T) {
	luatest.Run(t, os.DirFS("testdata"), "policy.lua", "policy_test.lua")
}
