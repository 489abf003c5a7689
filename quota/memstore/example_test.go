package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

func ExampleStore() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{Cycle: 24 * time.Hour})
	store.Put("key-1", 100, start)

	u, _ := quota.Consume(ctx, store, "key-1", start.Add(time.Hour))
	fmt.Println("used", u.Used, "left", u.Remaining(), "resets", u.Reset.Format(time.DateTime))

	store.Revoke("key-1")
	_, err := quota.Consume(ctx, store, "key-1", start.Add(2*time.Hour))
	fmt.Println(errors.Is(err, quota.ErrRevoked))
	// Output:
	// used 1 left 99 resets 2026-01-02 00:00:00
	// true
}
