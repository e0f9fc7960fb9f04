//go:build !linux

package kubetest

import "os/exec"

// setPdeathsig does nothing outside Linux: a test binary that dies without calling
// Stop leaves its children running.
func setPdeathsig(*exec.Cmd) {}
