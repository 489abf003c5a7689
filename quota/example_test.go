package quota_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

func ExampleConsume() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	store.Put("key-1", 2, start) // when the key is issued: 2 calls a cycle

	for _, at := range []time.Time{
		start.Add(time.Hour),
		start.Add(2 * time.Hour),
		start.Add(3 * time.Hour),      // refused: the cycle is spent
		start.Add(quota.DefaultCycle), // 30 days on: a new cycle opens
	} {
		u, err := quota.Consume(ctx, store, "key-1", at)
		switch {
		case errors.Is(err, quota.ErrExceeded):
			fmt.Printf("%s refused, resets %s\n", at.Format(time.DateOnly), u.Reset.Format(time.DateOnly))
		case err != nil:
			fmt.Println("error:", err)
		default:
			fmt.Printf("%s used %d of %d, %d left\n", at.Format(time.DateOnly), u.Used, u.Limit, u.Remaining())
		}
	}
	// Output:
	// 2026-01-01 used 1 of 2, 1 left
	// 2026-01-01 used 2 of 2, 0 left
	// 2026-01-01 refused, resets 2026-01-31
	// 2026-01-31 used 1 of 2, 1 left
}

func ExampleStore_reserve() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	store.Put("key-1", 10, now)

	// Reserve grants what is left, up to n, in one step.
	for _, n := range []int64{4, 4, 4, 4} {
		granted, u, _ := store.Reserve(ctx, "key-1", n, now)
		fmt.Printf("asked %d, granted %d, used %d\n", n, granted, u.Used)
	}
	// Output:
	// asked 4, granted 4, used 4
	// asked 4, granted 4, used 8
	// asked 4, granted 2, used 10
	// asked 4, granted 0, used 10
}

func ExampleMiddleware() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New(memstore.Config{})
	store.Put("key-1", 1, start)

	// In the server, keyID is apikey's context accessor and authentication runs
	// first; here the key ID travels in a header.
	keyID := func(r *http.Request) (string, bool) {
		id := r.Header.Get("Key-ID")
		return id, id != ""
	}
	now := func() time.Time { return start.Add(29 * 24 * time.Hour) }
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "data") })
	h := quota.Middleware(store, keyID, quota.Config{Now: now})(api)

	for range 2 {
		r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
		r.Header.Set("Key-ID", "key-1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%d remaining=%s reset=%s retry-after=%q\n", w.Code,
			w.Header().Get("X-Quota-Remaining"), w.Header().Get("X-Quota-Reset"), w.Header().Get("Retry-After"))
	}
	// Output:
	// 200 remaining=0 reset=1769817600 retry-after=""
	// 429 remaining=0 reset=1769817600 retry-after="86400"
}
