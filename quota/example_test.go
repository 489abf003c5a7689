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

// Leases spend calls from batches reserved in the store: the store counts a batch
// at a time, a call the handler did not serve goes back to the lease, and the
// leftover goes back to the store when the lease idles out.
func ExampleLeases() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	if err := store.Put(ctx, "key-1", 10_000, start); err != nil {
		log.Fatal(err)
	}
	leases := quota.NewLeases(store, quota.LeaseConfig{})

	// 50 calls a millisecond apart: leases of 1, 2, 4, 8, 16, 32 and 64 calls
	// (each reserved when the one before ran low), 1% of the limit at most.
	now := start.Add(time.Hour)
	var u quota.Usage
	for range 50 {
		var err error
		if u, err = leases.Take(ctx, "key-1", now); err != nil {
			log.Fatal(err)
		}
		now = now.Add(time.Millisecond)
	}
	stored, _ := store.Usage(ctx, "key-1", now)
	fmt.Println("served 50, remaining", u.Remaining(), "- the store counts", stored.Used)

	leases.Refund("key-1", u) // the handler failed: no I/O, the next Take spends it

	// The gate's loop runs Expire every second: a lease idle for 2 s goes back.
	if err := leases.Expire(ctx, now.Add(2*time.Second)); err != nil {
		log.Fatal(err)
	}
	stored, _ = store.Usage(ctx, "key-1", now)
	st := leases.Stats()
	fmt.Println("after Expire the store counts", stored.Used, "-", st.Reservations, "reservations,", st.Releases, "release")
	// Output:
	// served 50, remaining 9950 - the store counts 112
	// after Expire the store counts 49 - 7 reservations, 1 release
}
