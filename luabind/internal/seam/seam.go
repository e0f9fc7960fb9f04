// Package seam is the one door between package luabind, the runtime, and its test
// harness, package luatest: the harness lives outside the runtime but must load a test
// file into the runtime's sandboxed VMs and build the views hooks see.
//
// luabind fills [Open] in its init; nothing else sets it, and it does not change after.
// The values crossing it are typed any because this package cannot import luabind (which
// imports it): rt is a *luabind.Runtime, and a VM handle is luabind's value that
// implements luatest's vmHandle interface, which names luabind's Request, BackendView and
// Response. luatest asserts both, and its tests fail if either assertion does not hold.
package seam

import "github.com/autoscalelua/autoscalelua/metrics"

// Open compiles a test file (name, code) for rt and returns the suite that makes VMs of
// rt which load, in order, the sandbox, the helpers (install, called with the VM's
// handle), the script and the test file. A test file that does not compile returns a
// *luabind.ScriptError wrapping luabind.ErrCompile.
var Open func(rt any, name, code string, install func(vm any)) (Suite, error)

// Suite makes the VMs of a test file's runs.
type Suite interface {
	// NewVM makes a fresh VM; close releases it. An error is the script's or the test
	// file's failure to load.
	NewVM() (vm any, close func(), err error)
}

// SnapshotField is a number of a snapshot view a fixture may set, in Lua's units.
type SnapshotField struct {
	Name string
	Set  func(*metrics.Snapshot, float64)
}
