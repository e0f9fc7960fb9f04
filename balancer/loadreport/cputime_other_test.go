//go:build !unix

package loadreport_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
