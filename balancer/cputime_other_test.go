//go:build !unix

package balancer_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
