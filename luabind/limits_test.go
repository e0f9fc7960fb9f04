package luabind

import (
	"testing"
	"time"
)

func TestPoolWaitNeverExceedsTheBudget(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		lim  Limits
		want time.Duration
	}{
		{"default", Limits{}, 5 * ms},
		{"shorter than the budget", Limits{PoolWait: ms}, ms},
		{"longer than the budget", Limits{RequestBudget: 2 * ms, PoolWait: time.Minute}, 2 * ms},
		{"NoBudget waits for the budget", Limits{RequestBudget: 3 * ms, PoolWait: NoBudget}, 3 * ms},
		{"no budget: the wait alone", Limits{RequestBudget: NoBudget, PoolWait: 7 * ms}, 7 * ms},
		{"neither: the context alone", Limits{RequestBudget: NoBudget, PoolWait: NoBudget}, 0},
	}
	for _, tt := range tests {
		if got := tt.lim.withDefaults().poolWait(hRequest); got != tt.want {
			t.Errorf("%s: poolWait = %v, want %v", tt.name, got, tt.want)
		}
	}
	if err := (Limits{PoolWait: -2}).Validate(); err == nil {
		t.Error("a negative PoolWait other than NoBudget validated")
	}
}
