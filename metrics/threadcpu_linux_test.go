package metrics

import "syscall"

// threadCPU returns the CPU time the calling thread has used, in nanoseconds, or -1
// where that is not known; benchmarks that lock their goroutine to its thread report
// it beside wall time, which a loaded machine inflates with the time spent waiting for
// a core.
func threadCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
