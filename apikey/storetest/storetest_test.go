package storetest_test

import (
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/storetest"
)

// TestConformanceCachedStore runs the suite on the example's store, a cache in
// front of memstore: the suite holds for stores other than tollgate's own.
func TestConformanceCachedStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) apikey.Store { return newCachedStore(memstore.New()) })
}
