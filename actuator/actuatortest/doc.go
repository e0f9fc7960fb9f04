// Package actuatortest provides a recording fake [actuator.Actuator] for tests
// of code that scales things.
//
// A [Recorder] remembers every request, can be told to fail, and reports the
// last replica count per target through [actuator.ReplicaReader].
//
// Example:
//
//	var rec actuatortest.Recorder
//	scaleUp(ctx, &rec) // the code under test takes an actuator.Actuator
//	last, ok := rec.Last(actuator.Target{Name: "checkout"})
//	if !ok || last.Replicas != 5 {
//		t.Errorf("last request = %+v, %v; want 5 replicas", last, ok)
//	}
package actuatortest
