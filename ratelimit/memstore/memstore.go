// Package memstore is a ratelimit.Store that counts in this process's memory,
// for a server that runs as one replica.
//
// It counts in ulule's memory counters (github.com/ulule/limiter/v3's memory
// store), in fixed windows on the wall clock. Counters live as long as their
// window; a background sweep, every 30 seconds, drops expired ones, and stops
// when the Store is garbage collected. Replicas that must share one budget use
// ratelimit/redisstore instead.
package memstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/releaseradar/tollgate/ratelimit"
)

// Store counts in memory. Build it with New; it is safe for concurrent use.
type Store struct {
	// cache is the counter table behind ulule's memory store, used directly:
	// ulule's Store would build a prefixed copy of the bucket name on every
	// call, which one process's counters do not need.
	cache *memory.CacheWrapper
}

var _ ratelimit.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{cache: memory.NewCache(limiter.DefaultCleanUpInterval)}
}

// Take implements ratelimit.Store. It reports Reset exactly (not truncated to
// the second), ignores ctx, and does not allocate once the bucket exists.
func (s *Store) Take(_ context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	if n < 1 || rate.Limit < 1 || rate.Period < time.Millisecond {
		return ratelimit.Window{}, fmt.Errorf("memstore: take %d at %v: n must be at least 1, the limit at least 1 and the period at least 1ms", n, rate)
	}
	// More than the limit is refused whatever it is; counting limit+1 keeps
	// repeated huge Takes from overflowing the count.
	if n > rate.Limit && rate.Limit < math.MaxInt64 {
		n = rate.Limit + 1
	}
	count, expiry := s.cache.Increment(bucket, n, rate.Period)
	return ratelimit.Window{
		Limit:     rate.Limit,
		Remaining: max(rate.Limit-count, 0),
		Reset:     expiry,
		Reached:   count > rate.Limit,
	}, nil
}
