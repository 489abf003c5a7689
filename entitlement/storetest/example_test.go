package storetest_test

import (
	"fmt"
	"testing"

	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/entitlement/storetest"
)

// A store's test file runs the suite with a constructor of empty stores.
func ExampleRun() {
	testConformance := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) entitlement.Store { return memstore.New(apimem.New()) })
	}
	fmt.Printf("%T\n", testConformance)
	// Output: func(*testing.T)
}
