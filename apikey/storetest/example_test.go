package storetest_test

import (
	"fmt"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/storetest"
)

// A store's test file runs the suite with a constructor of empty stores.
func ExampleRun() {
	testConformance := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) apikey.Store { return memstore.New() })
	}
	fmt.Printf("%T\n", testConformance)
	// Output: func(*testing.T)
}
