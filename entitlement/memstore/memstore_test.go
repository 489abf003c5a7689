package memstore_test

import (
	"testing"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/entitlement/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) entitlement.Store { return memstore.New() })
}

func TestLedgerConformance(t *testing.T) {
	t.Parallel()
	storetest.RunLedger(t, func(t *testing.T) entitlement.MeterLedger { return memstore.New() })
}
