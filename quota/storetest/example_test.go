package storetest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/quota/storetest"
)

// A store's test builds a Harness like this one and passes its constructor to
// storetest.Run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
//			return newHarness(cycle)
//		})
//	}
func ExampleHarness() {
	newHarness := func(cycle time.Duration) storetest.Harness {
		s := memstore.New(memstore.Config{Cycle: cycle})
		return storetest.Harness{
			Store:  s,
			Add:    s.Put,
			Revoke: s.Revoke,
			Stored: func(id string) (int64, time.Time) {
				// No cycle is due at the zero time, so Usage reports what is stored.
				u, _ := s.Usage(context.Background(), id, time.Time{})
				return u.Used, u.CycleStart
			},
		}
	}

	h := newHarness(0)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.Add("k", 10, start)
	granted, _, _ := h.Store.Reserve(context.Background(), "k", 4, start)
	used, _ := h.Stored("k")
	fmt.Println(granted, used)
	// Output: 4 4
}
