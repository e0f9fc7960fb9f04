package testenv

import "testing"

func TestStrict(t *testing.T) {
	t.Setenv(Var, "1")
	if !Strict() {
		t.Error("Strict() is false with the variable set to 1")
	}
	t.Setenv(Var, "")
	if Strict() {
		t.Error("Strict() is true with the variable empty")
	}
}
