// Package redisstore is a ratelimit.Store that keeps its counters in Redis, so
// that every replica of a server counts in one budget.
//
// It counts with ulule's Redis store (github.com/ulule/limiter/v3), one Lua
// script per Take: the count is exact across processes, and a counter is a Redis
// key "<prefix>:<bucket>" that expires with its window. Take reports Reset
// truncated to the second. Counts are exact up to 2^53 hits a window (the script
// counts in Lua's numbers, which are doubles): keep limits far below that.
//
// # Batches
//
// Store is a ratelimit.BatchStore, so a ratelimit.Limiter takes a busy bucket's
// hits from it several at a time (see Batches in package ratelimit). TakeBatch
// runs a script of its own, the same as ulule's increment, on the same counters
// (Take and TakeBatch count together), and also reads back the count, to grant
// a batch in part when the window has less room than it asks. Its Reset is
// precise and safe: the counter's remaining time to live, as Redis reported it,
// added to the time the request was sent, less a millisecond (Redis's
// resolution), so it is never after the window's real end.
//
// # Connecting
//
// ulule's store loads its scripts when it is built, and New loads TakeBatch's
// with them, at once. If Redis cannot be reached, New does not fail: the Store
// connects on use, trying at most once a second, and every Take and TakeBatch
// fails until then, so the Limiter's failure policy applies and a replica can
// start while Redis is down. If Redis answers with an error (a wrong password,
// an ACL that forbids scripts), New returns it: that is a configuration to fix,
// not an outage to wait out. A server that is up but not ready (LOADING, BUSY,
// MASTERDOWN, TRYAGAIN, CLUSTERDOWN) counts as unreachable.
//
// # Timeouts
//
// A request that takes from Redis waits for it (with batches, one request takes
// for several of a busy bucket's, and those that arrive meanwhile wait for its
// answer), so give the client short timeouts, for example DialTimeout,
// ReadTimeout and WriteTimeout of 100ms, MaxRetries 1 and DialerRetries 1. With
// go-redis's defaults a request to an unreachable Redis waited 1.7s (about 20ms
// with those settings); the Limiter's breaker then stops asking for a second
// after three consecutive errors.
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

var _ ratelimit.BatchStore = (*Store)(nil)

// batchScript adds ARGV[1] hits to the counter KEYS[1], opening a window of
// ARGV[2] milliseconds when the counter is new, and returns the count and the
// window's remaining time to live in milliseconds. It is ulule's increment
// script, so that Take (through ulule) and TakeBatch count alike.
var batchScript = redis.NewScript(`
local key = KEYS[1]
local count = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local ret = redis.call("incrby", key, ARGV[1])
if ret == count then
	if ttl > 0 then
		redis.call("pexpire", key, ARGV[2])
	end
	return {ret, ttl}
end
ttl = redis.call("pttl", key)
return {ret, ttl}
`)

// New returns a store keeping its counters on client, named "<prefix>:<bucket>";
// prefix "" means DefaultPrefix. It fails when client is nil or Redis refuses
// the store's scripts (see the package comment); an unreachable Redis is not an
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
	if err == nil {
		err = batchScript.Load(context.Background(), s.client).Err()
	}
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

// TakeBatch implements ratelimit.BatchStore with one round trip to Redis (two
// when Redis has lost the script, which is then sent whole). Its errors start
// with "redisstore: " and wrap the client's.
func (s *Store) TakeBatch(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (int64, ratelimit.Window, error) {
	if n < 1 || rate.Limit < 1 || rate.Period < time.Millisecond {
		return 0, ratelimit.Window{}, fmt.Errorf("redisstore: take %d at %v: n must be at least 1, the limit at least 1 and the period at least 1ms", n, rate)
	}
	if _, err := s.store(); err != nil {
		return 0, ratelimit.Window{}, err
	}
	asked := n
	if n > rate.Limit && rate.Limit < math.MaxInt64 {
		n = rate.Limit + 1 // as in Take
	}
	sent := time.Now()
	res, err := batchScript.Run(ctx, s.client, []string{s.prefix + ":" + bucket}, n, rate.Period.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, ratelimit.Window{}, fmt.Errorf("redisstore: %w", err)
	}
	if len(res) != 2 {
		return 0, ratelimit.Window{}, fmt.Errorf("redisstore: the batch script returned %d values, want 2", len(res))
	}
	count, ttl := res[0], res[1]
	// The script ran after the request was sent, so the window ends no sooner
	// than ttl after sent. A counter without a time to live (not one of ours)
	// never resets, so any Reset is safe: a period, as ulule reports.
	reset := sent.Add(rate.Period)
	if ttl > 0 {
		reset = sent.Add(time.Duration(ttl-1) * time.Millisecond)
	}
	granted := min(max(rate.Limit-(count-n), 0), asked)
	return granted, ratelimit.Window{
		Limit:     rate.Limit,
		Remaining: max(rate.Limit-count, 0),
		Reset:     reset,
		Reached:   count > rate.Limit,
	}, nil
}
