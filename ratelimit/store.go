package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"
)

// DefaultPrefix starts the name of every counter NewStore keeps.
const DefaultPrefix = "tollgate:rl"

// NewStore returns the ulule store behind every Limiter: ulule's memory store when
// client is nil (one process), ulule's Redis store on client otherwise, which
// replicas share. Counters are named "<prefix>:<bucket>" (prefix "" means
// DefaultPrefix); a Redis counter expires with its window.
//
// ulule's Redis store loads its Lua scripts when it is built. If Redis cannot be
// reached at that moment, NewStore does not fail: it returns a store that builds
// ulule's on use, trying at most once a second, and fails every call until then,
// so the Limiter's store error policy applies and a replica can start while Redis
// is down. If Redis answers with an error (wrong password, scripting not
// allowed), NewStore returns that error.
//
// Every counted request waits for Redis, so give the client short timeouts, for
// example DialTimeout, ReadTimeout and WriteTimeout of 100ms, MaxRetries 1 and
// DialerRetries 1. With go-redis's defaults a request to an unreachable Redis
// waited 1.7s here (about 20ms with those settings); the Limiter's breaker then
// stops asking for a second after three consecutive errors.
func NewStore(client redis.UniversalClient, prefix string) (limiter.Store, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if c, ok := client.(*redis.Client); client == nil || ok && c == nil {
		return memory.NewStoreWithOptions(limiter.StoreOptions{
			Prefix:          prefix,
			CleanUpInterval: limiter.DefaultCleanUpInterval,
		}), nil
	}
	s := &lazyRedisStore{client: client, prefix: prefix, next: time.Now().Add(reconnectEvery)}
	inner, err := s.connect()
	s.last = err
	var rerr redis.Error
	switch {
	case err == nil:
		return inner, nil
	case errors.As(err, &rerr):
		return nil, fmt.Errorf("ratelimit: redis store: %w", err)
	default:
		return s, nil
	}
}

// lazyRedisStore is ulule's Redis store built on first use.
type lazyRedisStore struct {
	client redis.UniversalClient
	prefix string
	mu     sync.Mutex // held while one caller builds the store
	next   time.Time  // no new attempt before; guarded by mu
	last   error      // the last attempt's error; guarded by mu
	inner  atomic.Pointer[limiter.Store]
}

// reconnectEvery spaces attempts to build the store while Redis is unreachable.
const reconnectEvery = time.Second

var _ limiter.Store = (*lazyRedisStore)(nil)

// connect builds ulule's Redis store, which loads its scripts.
func (s *lazyRedisStore) connect() (limiter.Store, error) {
	return redisstore.NewStoreWithOptions(s.client, limiter.StoreOptions{
		Prefix:          s.prefix,
		CleanUpInterval: limiter.DefaultCleanUpInterval,
	})
}

// store returns ulule's store, building it if no other caller is doing so and the
// last attempt is at least reconnectEvery old.
func (s *lazyRedisStore) store() (limiter.Store, error) {
	if p := s.inner.Load(); p != nil {
		return *p, nil
	}
	if !s.mu.TryLock() {
		return nil, errors.New("ratelimit: redis store: connecting")
	}
	defer s.mu.Unlock()
	if p := s.inner.Load(); p != nil {
		return *p, nil
	}
	now := time.Now()
	if now.Before(s.next) {
		return nil, fmt.Errorf("ratelimit: redis store: %w", s.last)
	}
	s.next = now.Add(reconnectEvery)
	inner, err := s.connect()
	if err != nil {
		s.last = err
		return nil, fmt.Errorf("ratelimit: redis store: %w", err)
	}
	s.inner.Store(&inner)
	return inner, nil
}

func (s *lazyRedisStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	inner, err := s.store()
	if err != nil {
		return limiter.Context{}, err
	}
	return inner.Get(ctx, key, rate)
}

func (s *lazyRedisStore) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	inner, err := s.store()
	if err != nil {
		return limiter.Context{}, err
	}
	return inner.Peek(ctx, key, rate)
}

func (s *lazyRedisStore) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	inner, err := s.store()
	if err != nil {
		return limiter.Context{}, err
	}
	return inner.Reset(ctx, key, rate)
}

func (s *lazyRedisStore) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	inner, err := s.store()
	if err != nil {
		return limiter.Context{}, err
	}
	return inner.Increment(ctx, key, count, rate)
}
