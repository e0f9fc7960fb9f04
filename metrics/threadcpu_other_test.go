//go:build !linux

package metrics

func threadCPU() int64 { return -1 }
