package quota_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

func ExampleConsume() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	// When the key is issued: 2 calls a cycle, the first cycle starting now.
	if err := store.Put(ctx, "key-1", 2, start); err != nil {
		log.Fatal(err)
	}

	for _, at := range []time.Time{
		start.Add(time.Hour),
		start.Add(2 * time.Hour),
		start.Add(3 * time.Hour),      // refused: the cycle is spent
		start.Add(quota.DefaultCycle), // 30 days on: a new cycle opens
	} {
		u, err := quota.Consume(ctx, store, "key-1", at)
		switch {
		case errors.Is(err, quota.ErrExceeded):
			fmt.Printf("%s refused, resets %s, retry after %d s\n", at.Format(time.DateOnly),
				u.Reset.Format(time.DateOnly), quota.RetryAfter(u, at))
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Printf("%s used %d of %d, %d left\n", at.Format(time.DateOnly), u.Used, u.Limit, u.Remaining())
		}
	}
	// Output:
	// 2026-01-01 used 1 of 2, 1 left
	// 2026-01-01 used 2 of 2, 0 left
	// 2026-01-01 refused, resets 2026-01-31, retry after 2581200 s
	// 2026-01-31 used 1 of 2, 1 left
}

func ExampleStore_reserve() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	if err := store.Put(ctx, "key-1", 10, now); err != nil {
		log.Fatal(err)
	}

	// Reserve grants what is left, up to n, in one step.
	for _, n := range []int64{4, 4, 4, 4} {
		granted, u, err := store.Reserve(ctx, "key-1", n, now)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("asked %d, granted %d, used %d\n", n, granted, u.Used)
	}
	// Output:
	// asked 4, granted 4, used 4
	// asked 4, granted 4, used 8
	// asked 4, granted 2, used 10
	// asked 4, granted 0, used 10
}

// A call that was not served (the handler failed, the input was bad) is given back
// with the cycle start its reservation reported, so a give-back that arrives after
// the cycle restarted changes nothing.
func ExampleStore_release() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	if err := store.Put(ctx, "key-1", 3, now); err != nil {
		log.Fatal(err)
	}

	u, err := quota.Consume(ctx, store, "key-1", now)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reserved: used", u.Used)
	if err := store.Release(ctx, "key-1", 1, u.CycleStart); err != nil {
		log.Fatal(err)
	}
	u, err = store.Usage(ctx, "key-1", now)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("given back: used", u.Used, "remaining", u.Remaining())
	// Output:
	// reserved: used 1
	// given back: used 0 remaining 3
}

// Put replaces a quota: an upgrade starts a new cycle with the new limit and
// nothing used.
func ExampleStore_put() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	if err := store.Put(ctx, "key-1", 1, start); err != nil {
		log.Fatal(err)
	}
	if _, err := quota.Consume(ctx, store, "key-1", start); err != nil {
		log.Fatal(err)
	}
	_, err := quota.Consume(ctx, store, "key-1", start.Add(time.Hour))
	fmt.Println(err)

	upgraded := start.Add(2 * time.Hour)
	if err := store.Put(ctx, "key-1", 100, upgraded); err != nil {
		log.Fatal(err)
	}
	u, err := quota.Consume(ctx, store, "key-1", upgraded)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("used", u.Used, "of", u.Limit, "until", u.Reset.Format(time.DateTime))
	// Output:
	// quota: monthly API quota exceeded
	// used 1 of 100 until 2026-01-31 02:00:00
}
