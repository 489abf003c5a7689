// Package redisstore is a ratelimit.Store that keeps its counters in Redis, so
// that every replica of a server counts in one budget.
//
// It counts with ulule's Redis store (github.com/ulule/limiter/v3), one Lua
// script per Take: the count is exact across processes, and a counter is a Redis
// key "<prefix>:<bucket>" that expires with its window. Reset is reported
// truncated to the second. Counts are exact up to 2^53 hits a window (the script
// counts in Lua's numbers, which are doubles): keep limits far below that.
//
// # Connecting
//
// ulule's store loads its scripts when it is built. New tries to build it at once.
// If Redis cannot be reached, New does not fail: the Store builds ulule's store on
// use, trying at most once a second, and every Take fails until then, so the
// Limiter's failure policy applies and a replica can start while Redis is down. If
// Redis answers with an error (a wrong password, an ACL that forbids scripts), New
// returns it: that is a configuration to fix, not an outage to wait out. A server
// that is up but not ready (LOADING, BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN)
// counts as unreachable.
//
// # Timeouts
//
// Every counted request waits for Redis, so give the client short timeouts, for
// example DialTimeout, ReadTimeout and WriteTimeout of 100ms, MaxRetries 1 and
// DialerRetries 1. With go-redis's defaults a request to an unreachable Redis
// waited 1.7s (about 20ms with those settings); the Limiter's breaker then stops
// asking for a second after three consecutive errors.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	uluredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/releaseradar/tollgate/ratelimit"
)

// DefaultPrefix starts the name of every counter when New is given no prefix.
const DefaultPrefix = "tollgate:rl"

// reconnectEvery spaces attempts to build ulule's store while Redis is
// unreachable.
const reconnectEvery = time.Second

// errConnecting is Take's error while another caller is building ulule's store.
var errConnecting = errors.New("redisstore: connecting to Redis")

// Store counts in Redis. Build it with New; it is safe for concurrent use, and
// any number of Stores, in any number of processes, on one Redis and prefix share
// their counts.
type Store struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time // the clock of reconnection attempts

	inner atomic.Pointer[ulule] // nil until ulule's store is built

	mu   sync.Mutex // held while one caller builds ulule's store
	next time.Time  // no new attempt before; guarded by mu
	last error      // the last attempt's error, wrapped; guarded by mu
}

// ulule holds ulule's store, for atomic.Pointer.
type ulule struct{ limiter.Store }

var _ ratelimit.Store = (*Store)(nil)

// New returns a store keeping its counters on client, named "<prefix>:<bucket>";
// prefix "" means DefaultPrefix. It fails when client is nil or Redis refuses
// ulule's scripts (see the package comment); an unreachable Redis is not an
// error. The caller keeps ownership of client and closes it.
func New(client redis.UniversalClient, prefix string) (*Store, error) {
	if c, ok := client.(*redis.Client); client == nil || ok && c == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{client: client, prefix: prefix, now: time.Now}
	if err := s.connect(s.now()); err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) && !transient(rerr) {
			return nil, err
		}
	}
	return s, nil
}

// transient reports whether a Redis error reply means a server that is up but
// not ready yet, to be retried like an unreachable one.
func transient(err redis.Error) bool {
	msg := err.Error()
	for _, code := range []string{"LOADING ", "BUSY ", "MASTERDOWN ", "TRYAGAIN ", "CLUSTERDOWN "} {
		if strings.HasPrefix(msg, code) {
			return true
		}
	}
	return false
}

// connect builds ulule's store, which loads its scripts, and records when the
// next attempt may be made; s.mu is held or s is not shared yet.
func (s *Store) connect(now time.Time) error {
	s.next = now.Add(reconnectEvery)
	inner, err := uluredis.NewStoreWithOptions(s.client, limiter.StoreOptions{Prefix: s.prefix})
	if err != nil {
		s.last = fmt.Errorf("redisstore: connect: %w", err)
		return s.last
	}
	s.inner.Store(&ulule{inner})
	return nil
}

// store returns ulule's store, building it if no other caller is doing so and
// the last attempt is at least reconnectEvery old.
func (s *Store) store() (limiter.Store, error) {
	if p := s.inner.Load(); p != nil {
		return p.Store, nil
	}
	if !s.mu.TryLock() {
		return nil, errConnecting
	}
	defer s.mu.Unlock()
	if p := s.inner.Load(); p != nil {
		return p.Store, nil
	}
	now := s.now()
	if now.Before(s.next) {
		return nil, s.last
	}
	if err := s.connect(now); err != nil {
		return nil, err
	}
	return s.inner.Load().Store, nil
}

// Take implements ratelimit.Store with one round trip to Redis (a few more when
// Redis has lost ulule's scripts, which ulule then reloads). Its errors start
// with "redisstore: " and wrap the client's.
func (s *Store) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	if n < 1 || rate.Limit < 1 || rate.Period < time.Millisecond {
		return ratelimit.Window{}, fmt.Errorf("redisstore: take %d at %v: n must be at least 1, the limit at least 1 and the period at least 1ms", n, rate)
	}
	inner, err := s.store()
	if err != nil {
		return ratelimit.Window{}, err
	}
	// More than the limit is refused whatever it is; counting limit+1 keeps
	// repeated huge Takes from overflowing the counter.
	if n > rate.Limit && rate.Limit < math.MaxInt64 {
		n = rate.Limit + 1
	}
	lctx, err := inner.Increment(ctx, bucket, n, limiter.Rate{Limit: rate.Limit, Period: rate.Period})
	if err != nil {
		return ratelimit.Window{}, fmt.Errorf("redisstore: %w", err)
	}
	return ratelimit.Window{
		Limit:     lctx.Limit,
		Remaining: max(lctx.Remaining, 0),
		Reset:     time.Unix(lctx.Reset, 0),
		Reached:   lctx.Reached,
	}, nil
}
