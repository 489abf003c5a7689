package storetest_test

import "testing"

// TestConformance runs the suite on the example's store, so the example's
// conformance test is one that really runs.
func TestConformance(t *testing.T) {
	t.Parallel()
	testConformance(t)
}
