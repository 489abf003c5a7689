package memstore_test

import (
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) apikey.Store { return memstore.New() })
}

func TestChanges(t *testing.T) {
	t.Parallel()
	storetest.RunChanges(t, func(t *testing.T) apikey.Store { return memstore.New() })
}
