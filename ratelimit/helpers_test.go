package ratelimit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
)

// gold and free are the tests' rates: one a bucket can exhaust in a test, one no
// test reaches.
var (
	gold = ratelimit.Rate{Limit: 3, Period: time.Minute}
	free = ratelimit.Rate{Limit: 1_000_000_000, Period: time.Second}
)

// newLimiter builds a Limiter or fails the test.
func newLimiter(t testing.TB, store ratelimit.Store, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(store, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// countingStore wraps a store and records the buckets Take is asked about.
type countingStore struct {
	ratelimit.Store
	takes atomic.Int64
	mu    sync.Mutex
	keys  map[string]int
}

func newCountingStore(s ratelimit.Store) *countingStore {
	return &countingStore{Store: s, keys: make(map[string]int)}
}

func (s *countingStore) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	s.takes.Add(1)
	s.mu.Lock()
	s.keys[bucket]++
	s.mu.Unlock()
	return s.Store.Take(ctx, bucket, n, rate)
}

// buckets returns how often each bucket was asked about.
func (s *countingStore) buckets() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.keys)
}

// errFlaky is flakyStore's failure.
var errFlaky = errors.New("flaky: connection refused")

// flakyStore fails every Take while fail is set, with ctx's error when ctx is
// done (as a network client would) and errFlaky otherwise.
type flakyStore struct {
	ratelimit.Store
	fail atomic.Bool
}

func newFlakyStore() *flakyStore { return &flakyStore{Store: memstore.New()} }

func (s *flakyStore) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	if s.fail.Load() {
		if err := ctx.Err(); err != nil {
			return ratelimit.Window{}, err
		}
		return ratelimit.Window{}, errFlaky
	}
	return s.Store.Take(ctx, bucket, n, rate)
}

// storeFunc is a Store made of a function.
type storeFunc func(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error)

func (f storeFunc) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	return f(ctx, bucket, n, rate)
}

// slogText returns a logger writing text lines to w.
func slogText(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// lateCtx is a context without a deadline of its own whose deadline passes when
// expire is called, so that a test can let it pass while a store is asked.
type lateCtx struct {
	context.Context
	done    chan struct{}
	once    sync.Once
	expired atomic.Bool
}

func newLateCtx() *lateCtx {
	return &lateCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *lateCtx) Done() <-chan struct{} { return c.done }

func (c *lateCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *lateCtx) expire() {
	c.once.Do(func() {
		c.expired.Store(true)
		close(c.done)
	})
}
