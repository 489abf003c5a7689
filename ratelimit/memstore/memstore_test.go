package memstore_test

import (
	"context"
	"testing"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
	"github.com/releaseradar/tollgate/ratelimit/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) ratelimit.Store { return memstore.New() })
}

// TestStoresAreSeparate: two stores in one process count apart.
func TestStoresAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rate, _ := ratelimit.ParseRate("1-M")
	a, b := memstore.New(), memstore.New()
	if w, _ := a.Take(ctx, "k", 1, rate); w.Reached {
		t.Fatal("first take refused")
	}
	if w, _ := b.Take(ctx, "k", 1, rate); w.Reached {
		t.Fatal("the other store shares the first one's count")
	}
}

// TestTakeDoesNotAllocate: counting in an existing bucket is free.
func TestTakeDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	rate := ratelimit.Rate{Limit: 1 << 40, Period: 1 << 40}
	s.Take(ctx, "ak:free:k", 1, rate)
	if n := testing.AllocsPerRun(100, func() { s.Take(ctx, "ak:free:k", 1, rate) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
