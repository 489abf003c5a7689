package memstore_test

import (
	"context"
	"fmt"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
)

// One process's burst counters, behind a Limiter.
func Example() {
	l, err := ratelimit.New(memstore.New(), ratelimit.Config{})
	if err != nil {
		panic(err)
	}
	rate, _ := ratelimit.ParseRate("3-H")
	for range 4 {
		res := l.Allow(context.Background(), ratelimit.KeyBucket("gold", "hash-of-the-key"), rate)
		fmt.Println(res.Allowed, res.Remaining)
	}
	// Output:
	// true 2
	// true 1
	// true 0
	// false 0
}

// A Take of several hits, such as a batch request costing one hit per item, is
// granted whole or refused whole; a refused Take still counts.
func ExampleStore_Take() {
	ctx := context.Background()
	s := memstore.New()
	rate, _ := ratelimit.ParseRate("10-M")
	for _, n := range []int64{4, 5, 2, 1} {
		w, _ := s.Take(ctx, "ip:192.0.2.1", n, rate)
		fmt.Printf("take %d: reached %v, remaining %d\n", n, w.Reached, w.Remaining)
	}
	// Output:
	// take 4: reached false, remaining 6
	// take 5: reached false, remaining 1
	// take 2: reached true, remaining 0
	// take 1: reached true, remaining 0
}
