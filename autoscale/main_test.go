package autoscale_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zeroSource is a random source whose Float64 is always 0: no back-off jitter.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }
