package storetest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/quota/storetest"
)

// A store's test passes Run a function that builds a Harness on a fresh backend:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
//			return newHarness(cycle)
//		})
//	}
//
// This is such a function for memstore; the suite sets quotas through the Store and
// checks what the backend holds through Stored.
func ExampleRun() {
	newHarness := func(cycle time.Duration) storetest.Harness {
		s := memstore.New(memstore.Config{Cycle: cycle})
		return storetest.Harness{
			Store: s,
			Stored: func(id string) (int64, time.Time) {
				// No cycle is due at the zero time, so Usage reports what is stored.
				u, err := s.Usage(context.Background(), id, time.Time{})
				if err != nil {
					log.Fatal(err)
				}
				return u.Used, u.CycleStart
			},
		}
	}

	// What a case of the suite does with it.
	ctx := context.Background()
	h := newHarness(0)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := h.Store.Put(ctx, "k", 10, start); err != nil {
		log.Fatal(err)
	}
	granted, _, err := h.Store.Reserve(ctx, "k", 4, start)
	if err != nil {
		log.Fatal(err)
	}
	used, cycleStart := h.Stored("k")
	fmt.Println("granted", granted, "stored", used, "since", cycleStart.Format(time.DateOnly))
	// Output: granted 4 stored 4 since 2026-01-01
}
