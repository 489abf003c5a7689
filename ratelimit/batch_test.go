package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/testenv"
)

// remote is a BatchStore in memory on an injected clock, standing in for Redis:
// it counts in fixed windows as redisstore does, reports each window's exact
// end as Reset, records every window and every batch asked for, and lets a
// test hold, fail or watch its calls through hook.
type remote struct {
	now   func() time.Time
	calls atomic.Int64
	// hook, when set, runs at the start of every call; an error fails the call
	// without counting.
	hook func(ctx context.Context, n int64) error

	mu      sync.Mutex
	windows map[string][]*remoteWindow
	sizes   []int64
}

type remoteWindow struct {
	start, end time.Time
	count      int64
}

func newRemote(now func() time.Time) *remote {
	return &remote{now: now, windows: make(map[string][]*remoteWindow)}
}

func (s *remote) TakeBatch(ctx context.Context, bucket string, n int64, rate Rate) (int64, Window, error) {
	s.calls.Add(1)
	if n < 1 || !rate.valid() {
		return 0, Window{}, fmt.Errorf("remote: take %d at %v", n, rate)
	}
	if s.hook != nil {
		if err := s.hook(ctx, n); err != nil {
			return 0, Window{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, n)
	now := s.now()
	ws := s.windows[bucket]
	if len(ws) == 0 || !now.Before(ws[len(ws)-1].end) {
		ws = append(ws, &remoteWindow{start: now, end: now.Add(rate.Period)})
		s.windows[bucket] = ws
	}
	w := ws[len(ws)-1]
	before := w.count
	w.count += min(n, rate.Limit+1)
	granted := min(max(rate.Limit-before, 0), n)
	return granted, Window{Limit: rate.Limit, Remaining: max(rate.Limit-w.count, 0), Reset: w.end, Reached: w.count > rate.Limit}, nil
}

func (s *remote) Take(ctx context.Context, bucket string, n int64, rate Rate) (Window, error) {
	_, w, err := s.TakeBatch(ctx, bucket, n, rate)
	return w, err
}

// batchSizes returns the sizes of the batches asked for so far.
func (s *remote) batchSizes() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.sizes...)
}

// windowAt returns the index of bucket's window open at t, or -1.
func (s *remote) windowAt(bucket string, t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range s.windows[bucket] {
		if !t.Before(w.start) && t.Before(w.end) {
			return i
		}
	}
	return -1
}

// newTestClock returns a settable clock, safe for concurrent use.
func newTestClock() *testenv.Clock { return testenv.NewClock(time.Unix(1_700_000_000, 0)) }

var errDown = errors.New("remote: connection refused")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newBatchLimiter(t testing.TB, s Store, cfg Config) *Limiter {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	l, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// entry returns a copy of bucket's batch state.
func (l *Limiter) entry(bucket string) (batchEntry, bool) {
	sh := l.batch.shard(bucket)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[bucket]
	if !ok {
		return batchEntry{}, false
	}
	return *e, true
}

// claims returns the claims on bucket's open take, 0 when there is none.
func (l *Limiter) claims(bucket string) int64 {
	sh := l.batch.shard(bucket)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[bucket]; e != nil && e.open != nil {
		return e.open.claims
	}
	return 0
}

// waitFor yields until cond holds (no timing: the test's own timeout bounds it).
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
		time.Sleep(50 * time.Microsecond)
	}
}

// TestBatchingIsChosen: a BatchStore is batched unless MaxBatch is 1 or
// negative; any other store is never batched.
func TestBatchingIsChosen(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	for _, tc := range []struct {
		store   Store
		max     int
		batched bool
	}{
		{newRemote(clk.Now), 0, true},
		{newRemote(clk.Now), 2, true},
		{newRemote(clk.Now), 1, false},
		{newRemote(clk.Now), -1, false},
		{storeOnly{newRemote(clk.Now)}, 0, false},
	} {
		l := newBatchLimiter(t, tc.store, Config{MaxBatch: tc.max, Now: clk.Now})
		if (l.batch != nil) != tc.batched {
			t.Errorf("%T with MaxBatch %d: batched %v, want %v", tc.store, tc.max, l.batch != nil, tc.batched)
		}
		rate := Rate{Limit: 1000, Period: time.Minute}
		for range 100 {
			clk.Add(time.Millisecond)
			if res := l.Allow(context.Background(), "b", rate); !res.Allowed {
				t.Fatalf("%+v", res)
			}
		}
		calls := l.Stats().StoreCalls
		if tc.batched != (calls < 100) {
			t.Errorf("%T with MaxBatch %d: %d store calls for 100 requests", tc.store, tc.max, calls)
		}
		if tc.max == 0 && tc.batched {
			// 1000/batchShare bounds the default batches before DefaultMaxBatch does.
			if sizes := tc.store.(*remote).batchSizes(); sizes[len(sizes)-1] != rate.Limit/batchShare {
				t.Errorf("default batches %v, want them to reach %d", sizes, rate.Limit/batchShare)
			}
		}
	}
}

// storeOnly hides every method of a store but Take.
type storeOnly struct{ s Store }

func (s storeOnly) Take(ctx context.Context, bucket string, n int64, rate Rate) (Window, error) {
	return s.s.Take(ctx, bucket, n, rate)
}

// TestBatchGrowsThenShrinksToTheLimit: on a busy bucket in one process, batches
// double from 1 up to MaxBatch, stay at most a quarter of what remains and end
// in single hits; exactly the limit is allowed, each request seeing the exact
// remainder, and then the bucket is refused.
func TestBatchGrowsThenShrinksToTheLimit(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	const limit = 1000
	rate := Rate{Limit: limit, Period: time.Minute}
	for i := range limit {
		clk.Add(time.Millisecond)
		res := l.Allow(context.Background(), "hot", rate)
		if !res.Allowed || res.Err != nil || res.Remaining != int64(limit-1-i) || res.Limit != limit {
			t.Fatalf("request %d: %+v; want allowed with %d remaining", i+1, res, limit-1-i)
		}
	}
	for i := range 3 {
		if res := l.Allow(context.Background(), "hot", rate); res.Allowed || !res.Reached || res.Remaining != 0 {
			t.Fatalf("request %d past the limit: %+v", limit+i+1, res)
		}
	}
	sizes := store.batchSizes()
	if want := []int64{1, 2, 4, 8, 16}; fmt.Sprint(sizes[:5]) != fmt.Sprint(want) {
		t.Errorf("first batches %v, want %v", sizes[:5], want)
	}
	left := int64(limit)
	for i, n := range sizes {
		if n > 16 || n > max(left/4, 1) {
			t.Fatalf("batch %d of %d hits with %d left (batches %v)", i+1, n, left, sizes)
		}
		left = max(left-n, 0)
	}
	if last := sizes[len(sizes)-6:]; fmt.Sprint(last) != fmt.Sprint([]int64{1, 1, 1, 1, 1, 1}) {
		t.Errorf("last batches %v, want single hits near the limit", last)
	}
	s := l.Stats()
	if s.StoreCalls != uint64(len(sizes)) || s.StoreCalls > 100 || s.Batched != limit-uint64(len(sizes)) || s.BatchHeld != 0 {
		t.Errorf("Stats %+v: %d batches for %d requests", s, len(sizes), limit)
	}
	t.Logf("%d requests, %d store calls: %.3f round trips per allowed request", limit, s.StoreCalls, float64(s.StoreCalls)/limit)
}

// TestBatchHalves: a batch that lasted longer than batchQuick halves the next
// one, once for every batchQuick it lasted; a quick one doubles it again.
func TestBatchHalves(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 1_000_000, Period: time.Hour}
	allow := func() {
		t.Helper()
		if res := l.Allow(context.Background(), "b", rate); !res.Allowed {
			t.Fatal(res)
		}
	}
	for len(store.batchSizes()) < 6 {
		clk.Add(time.Millisecond)
		allow()
	}
	// Spend the batch of 16 slowly: it lasts 15 × 14ms after its arrival.
	for range 15 {
		clk.Add(14 * time.Millisecond)
		allow()
	}
	for len(store.batchSizes()) < 8 {
		allow()
		clk.Add(time.Millisecond)
	}
	sizes := store.batchSizes()
	if want := "[1 2 4 8 16 16 4 8]"; fmt.Sprint(sizes) != want {
		t.Fatalf("batches %v, want %s (16 lasted 210ms: a quarter; then quick again: doubled)", sizes, want)
	}
}

// TestBatchShareOfLimit: with the default MaxBatch, a busy bucket's batches grow
// to 1/batchShare of its limit (2.5%, at least 1 hit) and no further, up to
// DefaultMaxBatch: what one replica may hold back of a window. The plans' burst
// rates of the reference server are among the limits.
func TestBatchShareOfLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ limit, most int64 }{
		{30, 1}, {79, 1}, {80, 2}, {600, 15}, {3000, 75}, {1_000_000, DefaultMaxBatch},
	} {
		clk := newTestClock()
		store := newRemote(clk.Now)
		l := newBatchLimiter(t, store, Config{Now: clk.Now})
		rate := Rate{Limit: tc.limit, Period: time.Hour}
		for range min(tc.limit, 2000) {
			clk.Add(100 * time.Microsecond) // every batch spent quickly
			if res := l.Allow(context.Background(), "b", rate); !res.Allowed {
				t.Fatalf("limit %d: %+v", tc.limit, res)
			}
		}
		sizes := store.batchSizes()
		if got := slices.Max(sizes); got != tc.most {
			t.Errorf("limit %d: batches %v, want them to reach %d and no more", tc.limit, sizes, tc.most)
		}
	}
}

// TestBatchNeverOutlivesItsWindow: hits held when their window resets are
// dropped, not spent in the next; the store's windows each see at most their
// limit allowed, and every allowed request falls inside a window of the store.
// Time moves at random, through many windows, over two limiters sharing the
// store.
func TestBatchNeverOutlivesItsWindow(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	limiters := []*Limiter{
		newBatchLimiter(t, store, Config{Now: clk.Now}),
		newBatchLimiter(t, store, Config{Now: clk.Now, DenyCacheSize: -1}),
	}
	rate := Rate{Limit: 50, Period: time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	allowed := map[int]int64{}
	for i := range 20000 {
		clk.Add(time.Duration(rnd.IntN(3000)) * time.Microsecond)
		now := clk.Now()
		res := limiters[rnd.IntN(2)].Allow(context.Background(), "b", rate)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if !res.Allowed {
			continue
		}
		w := store.windowAt("b", now)
		if w < 0 {
			t.Fatalf("request %d allowed at %v, outside every window of the store", i, now)
		}
		allowed[w]++
		if res.Reset.After(store.windows["b"][w].end) {
			t.Fatalf("request %d: Reset %v after its window's end %v", i, res.Reset, store.windows["b"][w].end)
		}
	}
	if len(allowed) < 20 {
		t.Fatalf("only %d windows", len(allowed))
	}
	full := 0
	for w, n := range allowed {
		if n > rate.Limit {
			t.Errorf("window %d allowed %d, limit %d", w, n, rate.Limit)
		}
		if n == rate.Limit {
			full++
		}
	}
	t.Logf("%d windows, %d of them served to the limit; store calls %d and %d", len(allowed), full, limiters[0].Stats().StoreCalls, limiters[1].Stats().StoreCalls)
}

// TestBatchHeldHitsExpire: a bucket holding hits at its window's Reset drops
// them: the next request asks the store, which opens a new window.
func TestBatchHeldHitsExpire(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 1000, Period: time.Minute}
	for len(store.batchSizes()) < 5 {
		clk.Add(time.Millisecond)
		l.Allow(context.Background(), "b", rate)
	}
	e, _ := l.entry("b")
	if e.tokens != 15 || l.Stats().BatchHeld != 15 {
		t.Fatalf("held %d (Stats %+v), want 15 after a batch of 16", e.tokens, l.Stats())
	}
	clk.Add(e.w.Reset.Sub(clk.Now()))
	calls := store.calls.Load()
	res := l.Allow(context.Background(), "b", rate)
	if !res.Allowed || res.Local || store.calls.Load() != calls+1 || len(store.windows["b"]) != 2 {
		t.Fatalf("at the Reset: %+v, %d calls; want a store call opening a second window", res, store.calls.Load()-calls)
	}
	if got := store.windows["b"][1].count; got != store.batchSizes()[5] {
		t.Errorf("the new window counts %d, want only its own batch", got)
	}
}

// TestBatchExactAcrossLimiters: two limiters on one store, eight clients each,
// every client requesting until refused: exactly the limit is allowed, though
// batches race (some granted in part) near the end.
func TestBatchExactAcrossLimiters(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{1, 7, 40, 80, 1000, 5000, 20_000} {
		clk := newTestClock()
		store := newRemote(clk.Now)
		store.hook = func(context.Context, int64) error { runtime.Gosched(); return nil }
		a := newBatchLimiter(t, store, Config{Now: clk.Now})
		b := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
		rate := Rate{Limit: limit, Period: time.Hour}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for i := range 16 {
			l := []*Limiter{a, b}[i%2]
			wg.Go(func() {
				for {
					res := l.Allow(context.Background(), "shared", rate)
					if res.Err != nil {
						t.Error(res.Err)
						return
					}
					if !res.Allowed {
						return
					}
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != limit {
			t.Errorf("limit %d: %d allowed", limit, got)
		}
		sa, sb := a.Stats(), b.Stats()
		if sa.BatchHeld != 0 || sb.BatchHeld != 0 {
			t.Errorf("limit %d: hits still held after every client was refused: %d, %d", limit, sa.BatchHeld, sb.BatchHeld)
		}
		t.Logf("limit %d: store calls %d + %d", limit, sa.StoreCalls, sb.StoreCalls)
	}
}

// blocking makes store hold each call until release is closed, reporting its
// size on entered first.
func blocking(store *remote) (entered chan int64, release chan struct{}) {
	entered, release = make(chan int64, 16), make(chan struct{})
	store.hook = func(ctx context.Context, n int64) error {
		entered <- n
		<-release
		return nil
	}
	return entered, release
}

// warm grows bucket's batches to size 16 and spends what it holds, so that the
// next request of a limiter with MaxBatch 16 takes a batch of 16.
func warm(t *testing.T, l *Limiter, clk *testenv.Clock, bucket string, rate Rate) {
	t.Helper()
	for {
		clk.Add(time.Millisecond)
		if res := l.Allow(context.Background(), bucket, rate); !res.Allowed {
			t.Fatal(res)
		}
		if e, _ := l.entry(bucket); e.size == 16 && e.tokens == 0 {
			return
		}
	}
}

// TestBatchWaiters: requests that arrive while a batch is taken wait for it, as
// many as it holds; the next one takes a batch of its own.
func TestBatchWaiters(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 100_000, Period: time.Hour}
	warm(t, l, clk, "b", rate)
	before := l.Stats()
	entered, release := blocking(store)

	results := make(chan Result, 17)
	go func() { results <- l.Allow(context.Background(), "b", rate) }()
	if n := <-entered; n != 16 {
		t.Fatalf("batch of %d, want 16", n)
	}
	for range 15 {
		go func() { results <- l.Allow(context.Background(), "b", rate) }()
	}
	waitFor(func() bool { return l.claims("b") == 16 })
	go func() { results <- l.Allow(context.Background(), "b", rate) }()
	<-entered // the 17th request takes its own batch
	close(release)
	for i := range 17 {
		if res := <-results; !res.Allowed || res.Err != nil || res.Local {
			t.Fatalf("result %d: %+v", i+1, res)
		}
	}
	s := l.Stats()
	if calls := s.StoreCalls - before.StoreCalls; calls != 2 {
		t.Errorf("%d store calls for 17 requests, want 2", calls)
	}
	if batched := s.Batched - before.Batched; batched != 15 {
		t.Errorf("%d requests served by another's batch, want 15", batched)
	}
	if s.BatchHeld != 15 {
		t.Errorf("held %d, want the second batch's 15", s.BatchHeld)
	}
}

// TestBatchWaiterCanceled: a waiting request whose client leaves is refused with
// context.Canceled and not counted; the hit its wait was for is held for the
// next request.
func TestBatchWaiterCanceled(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 100_000, Period: time.Hour}
	warm(t, l, clk, "b", rate)
	entered, release := blocking(store)
	taker := make(chan Result, 1)
	go func() { taker <- l.Allow(context.Background(), "b", rate) }()
	n := <-entered
	ctx, cancel := context.WithCancel(context.Background())
	waiter := make(chan Result, 1)
	go func() { waiter <- l.Allow(ctx, "b", rate) }()
	waitFor(func() bool { return l.claims("b") == 2 })
	cancel()
	if res := <-waiter; res.Allowed || !errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, ErrUnavailable) {
		t.Fatalf("canceled waiter: %+v", res)
	}
	close(release)
	if res := <-taker; !res.Allowed {
		t.Fatalf("taker: %+v", res)
	}
	if e, _ := l.entry("b"); e.tokens != n-1 {
		t.Fatalf("held %d after a batch of %d with the waiter gone, want %d", e.tokens, n, n-1)
	}
	if s := l.Stats(); s.StoreErrors != 0 {
		t.Errorf("StoreErrors %d", s.StoreErrors)
	}
}

// TestBatchWaiterDeadline: a waiting request whose deadline passes is a store
// failure (decided by the policy, counted, matching ErrUnavailable and
// context.DeadlineExceeded), but the breaker hears only the take's outcome.
func TestBatchWaiterDeadline(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		clk := newTestClock()
		store := newRemote(clk.Now)
		l := newBatchLimiter(t, store, Config{Now: clk.Now, FailClosed: failClosed, MaxBatch: 16})
		rate := Rate{Limit: 100_000, Period: time.Hour}
		warm(t, l, clk, "b", rate)
		entered, release := blocking(store)
		taker := make(chan Result, 1)
		go func() { taker <- l.Allow(context.Background(), "b", rate) }()
		<-entered
		ctx := newLateCtx()
		waiter := make(chan Result, 1)
		go func() { waiter <- l.Allow(ctx, "b", rate) }()
		waitFor(func() bool { return l.claims("b") == 2 })
		ctx.expire()
		res := <-waiter
		if res.Allowed == failClosed || !errors.Is(res.Err, ErrUnavailable) || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Fatalf("failClosed=%v: waiter past its deadline: %+v", failClosed, res)
		}
		close(release)
		if res := <-taker; !res.Allowed || res.Err != nil {
			t.Fatalf("taker: %+v", res)
		}
		if s := l.Stats(); s.StoreErrors != 1 || l.breaker.failures.Load() != 0 {
			t.Errorf("failClosed=%v: StoreErrors %d, breaker failures %d; want 1 and 0", failClosed, s.StoreErrors, l.breaker.failures.Load())
		}
	}
}

// TestBatchTakerCanceled: when the request taking a batch is canceled, it is
// gone, and those waiting for its batch take one of their own.
func TestBatchTakerCanceled(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 100_000, Period: time.Hour}
	warm(t, l, clk, "b", rate)
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan int64, 16), make(chan struct{})
	var first atomic.Bool
	store.hook = func(c context.Context, n int64) error {
		if first.CompareAndSwap(false, true) {
			entered <- n
			<-release
			cancel()
			return c.Err()
		}
		return nil
	}
	taker := make(chan Result, 1)
	go func() { taker <- l.Allow(ctx, "b", rate) }()
	<-entered
	waiters := make(chan Result, 3)
	for range 3 {
		go func() { waiters <- l.Allow(context.Background(), "b", rate) }()
	}
	waitFor(func() bool { return l.claims("b") == 4 })
	close(release)
	if res := <-taker; res.Allowed || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("canceled taker: %+v", res)
	}
	for range 3 {
		if res := <-waiters; !res.Allowed || res.Err != nil {
			t.Fatalf("waiter: %+v", res)
		}
	}
	if s := l.Stats(); s.StoreErrors != 0 || l.breaker.failures.Load() != 0 {
		t.Errorf("Stats %+v, breaker failures %d", s, l.breaker.failures.Load())
	}
}

// TestBatchStoreFails: a failed take decides its taker and its waiters by the
// policy, each counted as a store error, and counts once for the breaker; hits
// held are spent even while the breaker is open.
func TestBatchStoreFails(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, MaxBatch: 16})
	rate := Rate{Limit: 100_000, Period: time.Hour}
	warm(t, l, clk, "b", rate)
	// Another bucket holds hits.
	for range 4 {
		clk.Add(time.Millisecond)
		l.Allow(context.Background(), "held", rate)
	}
	entered, release := make(chan int64, 16), make(chan struct{})
	var down atomic.Bool
	down.Store(true)
	store.hook = func(ctx context.Context, n int64) error {
		if !down.Load() {
			return nil
		}
		entered <- n
		<-release
		return errDown
	}
	results := make(chan Result, 4)
	go func() { results <- l.Allow(context.Background(), "b", rate) }()
	<-entered
	for range 3 {
		go func() { results <- l.Allow(context.Background(), "b", rate) }()
	}
	waitFor(func() bool { return l.claims("b") == 4 })
	close(release)
	for range 4 {
		if res := <-results; !res.Allowed || !errors.Is(res.Err, ErrUnavailable) || !errors.Is(res.Err, errDown) {
			t.Fatalf("%+v; want allowed (fail open), ErrUnavailable wrapping the store's error", res)
		}
	}
	if s := l.Stats(); s.StoreErrors != 4 || l.breaker.failures.Load() != 1 {
		t.Fatalf("StoreErrors %d, breaker failures %d; want 4 and 1", s.StoreErrors, l.breaker.failures.Load())
	}
	// Two more failures open the breaker.
	for range 2 {
		l.Allow(context.Background(), "c", rate)
	}
	calls := store.calls.Load()
	if res := l.Allow(context.Background(), "c", rate); !errors.Is(res.Err, errBreakerOpen) || store.calls.Load() != calls {
		t.Fatalf("breaker open: %+v", res)
	}
	if res := l.Allow(context.Background(), "held", rate); !res.Allowed || res.Err != nil || !res.Local {
		t.Fatalf("a bucket holding hits while the breaker is open: %+v", res)
	}
}

// TestBatchExhaustedLocally: once the store reports a window exhausted, a
// limiter without a deny cache refuses the bucket by itself until the Reset.
func TestBatchExhaustedLocally(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now, DenyCacheSize: -1})
	rate := Rate{Limit: 10, Period: time.Minute}
	for range 10 {
		if res := l.Allow(context.Background(), "b", rate); !res.Allowed {
			t.Fatal(res)
		}
	}
	calls := store.calls.Load()
	for range 5 {
		if res := l.Allow(context.Background(), "b", rate); res.Allowed || !res.Local || !res.Reached {
			t.Fatalf("%+v", res)
		}
	}
	if store.calls.Load() != calls || l.Stats().LocalDenials != 5 {
		t.Fatalf("%d store calls, Stats %+v", store.calls.Load()-calls, l.Stats())
	}
	e, _ := l.entry("b")
	clk.Add(e.w.Reset.Sub(clk.Now()))
	if res := l.Allow(context.Background(), "b", rate); !res.Allowed || store.calls.Load() != calls+1 {
		t.Fatalf("at the Reset: %+v", res)
	}
}

// TestBatchExhaustedWhileOthersFly: a request whose own batch finds the window
// exhausted waits for the other takes in flight (their hits could serve it); if
// its deadline passes meanwhile, it is refused as limited, not failed, and the
// others are refused once their takes answer likewise.
func TestBatchExhaustedWhileOthersFly(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now})
	rate := Rate{Limit: 80, Period: time.Hour} // batches of up to 80/batchShare = 2
	if res := l.Allow(context.Background(), "b", rate); !res.Allowed {
		t.Fatal(res)
	}
	var (
		mu       sync.Mutex
		releases []chan struct{}
		bypass   atomic.Bool
		entered  = make(chan int64, 4)
	)
	store.hook = func(ctx context.Context, n int64) error {
		if bypass.Load() {
			return nil
		}
		ch := make(chan struct{})
		mu.Lock()
		releases = append(releases, ch)
		mu.Unlock()
		entered <- n
		<-ch
		return nil
	}
	results := make(chan Result, 3)
	go func() { results <- l.Allow(context.Background(), "b", rate) }() // takes a batch of 2
	if n := <-entered; n != 2 {
		t.Fatalf("first batch %d, want 2", n)
	}
	go func() { results <- l.Allow(context.Background(), "b", rate) }() // waits for it
	waitFor(func() bool { return l.claims("b") == 2 })
	late := newLateCtx()
	third := make(chan Result, 1)
	go func() { third <- l.Allow(late, "b", rate) }() // takes a batch of its own
	<-entered
	// Another replica spends the rest of the window.
	bypass.Store(true)
	if _, err := store.Take(context.Background(), "b", 100, rate); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	close(releases[1]) // the third request's batch answers: nothing granted
	mu.Unlock()
	waitFor(func() bool {
		sh := l.batch.shard("b")
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.m["b"].wake != nil
	})
	late.expire()
	if res := <-third; res.Allowed || res.Err != nil || !res.Reached || res.Remaining != 0 {
		t.Fatalf("past its deadline, waiting on an exhausted window: %+v; want refused as limited", res)
	}
	mu.Lock()
	close(releases[0])
	mu.Unlock()
	for range 2 {
		if res := <-results; res.Allowed || res.Err != nil || !res.Reached {
			t.Fatalf("%+v; want refused", res)
		}
	}
	if s := l.Stats(); s.StoreErrors != 0 {
		t.Errorf("StoreErrors %d", s.StoreErrors)
	}
}

// TestBatchTableBounded: a shard holds at most its share of batchBuckets
// buckets; the ones beyond are counted a request at a time, exactly; entries of
// ended windows are swept for new ones.
func TestBatchTableBounded(t *testing.T) {
	t.Parallel()
	clk := newTestClock()
	store := newRemote(clk.Now)
	l := newBatchLimiter(t, store, Config{Now: clk.Now})
	rate := Rate{Limit: 2, Period: time.Minute}
	sh := &l.batch.shards[0]
	const perShard = batchBuckets / batchShards
	var names []string
	for i := 0; len(names) < perShard+100; i++ {
		if name := fmt.Sprint("b", i); l.batch.shard(name) == sh {
			names = append(names, name)
		}
	}
	for round := range 2 {
		for _, name := range names {
			if res := l.Allow(context.Background(), name, rate); !res.Allowed || res.Remaining != int64(1-round) {
				t.Fatalf("bucket %s, request %d: %+v", name, round+1, res)
			}
		}
	}
	for _, name := range names {
		if res := l.Allow(context.Background(), name, rate); res.Allowed {
			t.Fatalf("bucket %s, request 3: %+v", name, res)
		}
	}
	if s := l.Stats(); s.BatchBuckets != perShard {
		t.Fatalf("%d buckets with batch state, want %d", s.BatchBuckets, perShard)
	}
	clk.Add(2 * time.Minute)
	for i, fresh := 0, 0; fresh < 10; i++ {
		if name := fmt.Sprint("fresh", i); l.batch.shard(name) == sh {
			if res := l.Allow(context.Background(), name, rate); !res.Allowed {
				t.Fatal(res)
			}
			fresh++
		}
	}
	if got := l.Stats().BatchBuckets; got != 10 {
		t.Errorf("%d buckets after the windows ended and new buckets swept them, want the 10 new", got)
	}
}

// TestBatchAllowDoesNotAllocate: a request allowed from hits held allocates
// nothing.
func TestBatchAllowDoesNotAllocate(t *testing.T) {
	clk := newTestClock()
	l := newBatchLimiter(t, newRemote(clk.Now), Config{Now: clk.Now, MaxBatch: 1 << 20})
	rate := Rate{Limit: 1 << 40, Period: time.Hour}
	for range 1500 {
		l.Allow(context.Background(), "b", rate)
	}
	if e, _ := l.entry("b"); e.tokens < 200 {
		t.Fatalf("held %d", e.tokens)
	}
	if n := testing.AllocsPerRun(100, func() { l.Allow(context.Background(), "b", rate) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// lateCtx is a context whose deadline passes when expire is called.
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
