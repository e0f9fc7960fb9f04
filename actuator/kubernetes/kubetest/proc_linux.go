package kubetest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills the child if the test binary dies without calling Stop.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
