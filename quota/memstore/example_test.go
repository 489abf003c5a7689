package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

func ExampleStore() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{Cycle: 24 * time.Hour})
	if err := store.Put(ctx, "key-1", 100, start); err != nil {
		log.Fatal(err)
	}

	u, err := quota.Consume(ctx, store, "key-1", start.Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("used", u.Used, "left", u.Remaining(), "resets", u.Reset.Format(time.DateTime))

	// A day later the next call opens a new cycle.
	u, err = store.Usage(ctx, "key-1", start.Add(25*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("used", u.Used, "left", u.Remaining(), "resets", u.Reset.Format(time.DateTime))

	_, err = quota.Consume(ctx, store, "key-2", start)
	fmt.Println(errors.Is(err, quota.ErrNotFound))
	// Output:
	// used 1 left 99 resets 2026-01-02 00:00:00
	// used 0 left 100 resets 2026-01-03 01:00:00
	// true
}
