// Package storetest is the conformance suite that every ratelimit.Store must pass
// against its real backend.
//
// A store's test calls Run with a function that returns an empty store. The suite
// checks the contract of ratelimit.Store: Takes count down Remaining and are
// Reached past the limit, with a steady Reset a period after the window opened
// (or up to a second earlier); refused Takes count; Takes of several hits are
// granted or refused whole, far beyond the limit without overflow; invalid Takes
// fail and count nothing; buckets are separate however alike their names; and
// concurrent Takes are exact, each granted one seeing its own count. A store that
// is a ratelimit.BatchStore is also held to TakeBatch's contract: batches are
// granted whole or in part, exactly, under concurrency too, on the counters Take
// counts in, and the Reset they report is never after the window's end. Most
// cases count within one window and need no waiting; the ones that watch a
// window end use a one-second rate and wait, about a second (two for a
// BatchStore's Reset), in parallel with the others.
package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/ratelimit"
)

// minute is the rate of the cases that stay within one window.
var minute = ratelimit.Rate{Limit: 5, Period: time.Minute}

// Run runs the suite. newStore returns an empty store; it is called once per
// subtest, and once more to learn whether the store is a BatchStore, and the
// subtests run in parallel. It should fail t rather than return
// on error.
func Run(t *testing.T, newStore func(t *testing.T) ratelimit.Store) {
	cases := []struct {
		name string
		f    func(t *testing.T, s ratelimit.Store)
	}{
		{"Counts", testCounts},
		{"Reset", testReset},
		{"RefusedTakesCount", testRefusedTakesCount},
		{"TakeN", testTakeN},
		{"TakeMoreThanLimit", testTakeMoreThanLimit},
		{"InvalidTake", testInvalidTake},
		{"BucketsAreSeparate", testBucketsAreSeparate},
		{"ConcurrentExact", testConcurrentExact},
		{"ConcurrentExactN", testConcurrentExactN},
		{"WindowEnds", testWindowEnds},
	}
	if _, ok := newStore(t).(ratelimit.BatchStore); ok {
		for _, c := range []struct {
			name string
			f    func(t *testing.T, s ratelimit.BatchStore)
		}{
			{"BatchGrants", testBatchGrants},
			{"BatchSharesCount", testBatchSharesCount},
			{"BatchInvalid", testBatchInvalid},
			{"BatchConcurrentExact", testBatchConcurrentExact},
			{"BatchResetIsSafe", testBatchResetIsSafe},
		} {
			cases = append(cases, struct {
				name string
				f    func(t *testing.T, s ratelimit.Store)
			}{c.name, func(t *testing.T, s ratelimit.Store) { c.f(t, s.(ratelimit.BatchStore)) }})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.f(t, newStore(t))
		})
	}
}

// take calls s.Take and fails t on error.
func take(t *testing.T, s ratelimit.Store, bucket string, n int64, rate ratelimit.Rate) ratelimit.Window {
	t.Helper()
	w, err := s.Take(context.Background(), bucket, n, rate)
	if err != nil {
		t.Fatalf("Take(%q, %d, %v): %v", bucket, n, rate, err)
	}
	return w
}

// want fails t unless w reports limit, remaining and reached.
func want(t *testing.T, what string, w ratelimit.Window, limit, remaining int64, reached bool) {
	t.Helper()
	if w.Limit != limit || w.Remaining != remaining || w.Reached != reached {
		t.Errorf("%s: window %+v; want limit %d, remaining %d, reached %v", what, w, limit, remaining, reached)
	}
}

// sameReset fails t unless a and b are within a second of each other: a store
// may truncate Reset to the second and derive it from a remaining time to live.
func sameReset(t *testing.T, what string, a, b time.Time) {
	t.Helper()
	if d := a.Sub(b); d < -time.Second || d > time.Second {
		t.Errorf("%s: Reset %v, the window's first Take said %v", what, a, b)
	}
}

// testCounts: Takes of 1 count down Remaining to 0, the next is Reached, and
// every Take of the window reports its Reset: a rate's period after the first
// Take, or up to a second earlier.
func testCounts(t *testing.T, s ratelimit.Store) {
	before := time.Now()
	first := take(t, s, "counts", 1, minute)
	after := time.Now()
	want(t, "take 1", first, 5, 4, false)
	if lo, hi := before.Add(minute.Period-time.Second), after.Add(minute.Period); !first.Reset.After(lo) || first.Reset.After(hi) {
		t.Errorf("Reset %v; want within (%v, %v]", first.Reset, lo, hi)
	}
	for i := int64(2); i <= 5; i++ {
		w := take(t, s, "counts", 1, minute)
		want(t, fmt.Sprintf("take %d", i), w, 5, 5-i, false)
		sameReset(t, fmt.Sprintf("take %d", i), w.Reset, first.Reset)
	}
	for i := 6; i <= 8; i++ {
		w := take(t, s, "counts", 1, minute)
		want(t, fmt.Sprintf("take %d", i), w, 5, 0, true)
		sameReset(t, fmt.Sprintf("refused take %d", i), w.Reset, first.Reset)
	}
}

// testReset: a fresh bucket's Take of its whole limit is granted and leaves
// nothing; its window ends a period after it, whatever the rate.
func testReset(t *testing.T, s ratelimit.Store) {
	for _, rate := range []ratelimit.Rate{
		{Limit: 3, Period: time.Second},
		{Limit: 3, Period: time.Hour},
		{Limit: 3, Period: 24 * time.Hour},
		{Limit: 3, Period: 1500 * time.Millisecond},
	} {
		before := time.Now()
		w := take(t, s, "reset-"+rate.String(), 3, rate)
		after := time.Now()
		want(t, rate.String(), w, 3, 0, false)
		if lo, hi := before.Add(rate.Period-time.Second), after.Add(rate.Period); !w.Reset.After(lo) || w.Reset.After(hi) {
			t.Errorf("%v: Reset %v; want within (%v, %v]", rate, w.Reset, lo, hi)
		}
	}
}

// testRefusedTakesCount: a refused Take still counts (ulule's rule), so a Take
// of more than remains is refused whole and leaves the bucket exhausted.
func testRefusedTakesCount(t *testing.T, s ratelimit.Store) {
	want(t, "take 3 of 5", take(t, s, "refused", 3, minute), 5, 2, false)
	want(t, "take 3 more", take(t, s, "refused", 3, minute), 5, 0, true)
	want(t, "take 1 after the refused take", take(t, s, "refused", 1, minute), 5, 0, true)
}

// testTakeN: Takes of several hits count them all, up to exactly the limit.
func testTakeN(t *testing.T, s ratelimit.Store) {
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	want(t, "take 4", take(t, s, "n", 4, rate), 10, 6, false)
	want(t, "take 6", take(t, s, "n", 6, rate), 10, 0, false)
	want(t, "take 1 past the limit", take(t, s, "n", 1, rate), 10, 0, true)
	want(t, "fresh bucket, take 10", take(t, s, "n2", 10, rate), 10, 0, false)
	want(t, "fresh bucket, take 11", take(t, s, "n3", 11, rate), 10, 0, true)
}

// testTakeMoreThanLimit: Takes far beyond the limit are refused every time and
// never wrap around; a limit far beyond any real rate counts exactly.
func testTakeMoreThanLimit(t *testing.T, s ratelimit.Store) {
	for i := range 3 {
		want(t, fmt.Sprintf("huge take %d", i+1), take(t, s, "huge", math.MaxInt64, minute), 5, 0, true)
	}
	want(t, "take 1 after them", take(t, s, "huge", 1, minute), 5, 0, true)
	wide := ratelimit.Rate{Limit: 1 << 40, Period: time.Minute}
	want(t, "limit 2^40", take(t, s, "wide", 1, wide), 1<<40, 1<<40-1, false)
	want(t, "limit 2^40, take the rest", take(t, s, "wide", 1<<40-1, wide), 1<<40, 0, false)
	want(t, "limit 2^40, one more", take(t, s, "wide", 1, wide), 1<<40, 0, true)
}

// testInvalidTake: n < 1 and invalid rates fail and count nothing.
func testInvalidTake(t *testing.T, s ratelimit.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		n    int64
		rate ratelimit.Rate
	}{
		{0, minute},
		{-1, minute},
		{math.MinInt64, minute},
		{1, ratelimit.Rate{}},
		{1, ratelimit.Rate{Limit: 0, Period: time.Minute}},
		{1, ratelimit.Rate{Limit: -1, Period: time.Minute}},
		{1, ratelimit.Rate{Limit: 5, Period: 0}},
		{1, ratelimit.Rate{Limit: 5, Period: -time.Minute}},
		{1, ratelimit.Rate{Limit: 5, Period: time.Microsecond}},
	} {
		if w, err := s.Take(ctx, "invalid", tc.n, tc.rate); err == nil {
			t.Errorf("Take(%d, %+v) = %+v, nil; want an error", tc.n, tc.rate, w)
		}
	}
	want(t, "first valid take", take(t, s, "invalid", 1, minute), 5, 4, false)
}

// testBucketsAreSeparate: exhausting one bucket leaves others alone, however
// alike their names.
func testBucketsAreSeparate(t *testing.T, s ratelimit.Store) {
	take(t, s, "ak:gold:h1", 5, minute)
	want(t, "exhausted bucket", take(t, s, "ak:gold:h1", 1, minute), 5, 0, true)
	for _, b := range []string{"ak:gold:h2", "ak:free:h1", "ak:gold:h1:", "ak:gold:h", "AK:GOLD:H1", "ip:192.0.2.1", "ip:2001:db8::/64", "ip:unknown", "a bucket with spaces, ünïcödé", string(make([]byte, 1024))} {
		want(t, fmt.Sprintf("bucket %.20q", b), take(t, s, b, 1, minute), 5, 4, false)
	}
	want(t, "the exhausted bucket still", take(t, s, "ak:gold:h1", 1, minute), 5, 0, true)
}

// race runs count concurrent Takes of n on bucket and returns the Remaining of
// each one not Reached.
func race(t *testing.T, s ratelimit.Store, bucket string, count int, n int64, rate ratelimit.Rate) (granted []int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		start = make(chan struct{})
	)
	for range count {
		wg.Go(func() {
			<-start
			w, err := s.Take(ctx, bucket, n, rate)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case !w.Reached:
				granted = append(granted, w.Remaining)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i == 3 {
			t.Errorf("… and %d more errors", len(errs)-3)
			break
		}
		t.Errorf("Take(%q, %d): %v", bucket, n, err)
	}
	return granted
}

// testConcurrentExact: of 500 concurrent Takes on a limit of 100 exactly 100
// are granted, each seeing its own count.
func testConcurrentExact(t *testing.T, s ratelimit.Store) {
	const limit = 100
	rate := ratelimit.Rate{Limit: limit, Period: time.Minute}
	granted := race(t, s, "race", 5*limit, 1, rate)
	if len(granted) != limit {
		t.Fatalf("500 Takes on a limit of %d: %d granted, want exactly %d", limit, len(granted), limit)
	}
	slices.Sort(granted)
	for i, r := range granted {
		if r != int64(i) {
			t.Fatalf("the granted Takes reported Remaining %v; want each of 0..%d once", granted, limit-1)
		}
	}
	want(t, "after the race", take(t, s, "race", 1, rate), limit, 0, true)
}

// testConcurrentExactN: of 100 concurrent Takes of 3 on a limit of 30 exactly
// 10 are granted.
func testConcurrentExactN(t *testing.T, s ratelimit.Store) {
	rate := ratelimit.Rate{Limit: 30, Period: time.Minute}
	if granted := race(t, s, "race-n", 100, 3, rate); len(granted) != 10 {
		t.Fatalf("100 Takes of 3 on a limit of 30: %d granted, want exactly 10", len(granted))
	}
}

// testWindowEnds: once a one-second window ends, the bucket starts again from 0
// in a new window, which its first Take opens.
func testWindowEnds(t *testing.T, s ratelimit.Store) {
	rate := ratelimit.Rate{Limit: 2, Period: time.Second}
	first := take(t, s, "ends", 2, rate)
	// The window opened during that Take, so it has ended a period after it
	// returned.
	ended := time.Now().Add(rate.Period)
	want(t, "take 2 of 2", first, 2, 0, false)
	if w := take(t, s, "ends", 1, rate); !w.Reached {
		// A machine slow enough to spend the whole second in between proves
		// nothing either way.
		if time.Now().Before(ended) {
			t.Fatalf("take 3 of 2 in the window: %+v, want it reached", w)
		}
	}
	time.Sleep(time.Until(ended.Add(20 * time.Millisecond)))
	before := time.Now()
	next := take(t, s, "ends", 1, rate)
	after := time.Now()
	want(t, "first take of the next window", next, 2, 1, false)
	if lo, hi := before.Add(rate.Period-time.Second), after.Add(rate.Period); !next.Reset.After(lo) || next.Reset.After(hi) {
		t.Errorf("the next window resets at %v; want within (%v, %v]", next.Reset, lo, hi)
	}
	if !next.Reset.After(first.Reset) {
		t.Errorf("the next window resets at %v, not after the first's %v", next.Reset, first.Reset)
	}
}

// takeBatch calls s.TakeBatch and fails t on error.
func takeBatch(t *testing.T, s ratelimit.BatchStore, bucket string, n int64, rate ratelimit.Rate) (int64, ratelimit.Window) {
	t.Helper()
	g, w, err := s.TakeBatch(context.Background(), bucket, n, rate)
	if err != nil {
		t.Fatalf("TakeBatch(%q, %d, %v): %v", bucket, n, rate, err)
	}
	return g, w
}

// wantBatch fails t unless a TakeBatch granted granted hits and reported
// remaining and reached.
func wantBatch(t *testing.T, what string, g int64, w ratelimit.Window, granted, remaining int64, reached bool) {
	t.Helper()
	if g != granted {
		t.Errorf("%s: granted %d, want %d", what, g, granted)
	}
	want(t, what, w, w.Limit, remaining, reached)
}

// testBatchGrants: a batch is granted whole while it fits, in part when it
// crosses the limit (the rest counts as refused), and not at all after; far
// beyond the limit it grants what remains and never wraps.
func testBatchGrants(t *testing.T, s ratelimit.BatchStore) {
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	g, w := takeBatch(t, s, "batch", 4, rate)
	wantBatch(t, "batch 4 of 10", g, w, 4, 6, false)
	if w.Limit != 10 {
		t.Errorf("Limit %d, want 10", w.Limit)
	}
	g, w = takeBatch(t, s, "batch", 4, rate)
	wantBatch(t, "4 more", g, w, 4, 2, false)
	g, w = takeBatch(t, s, "batch", 4, rate)
	wantBatch(t, "4 more, 2 left", g, w, 2, 0, true)
	g, w = takeBatch(t, s, "batch", 1, rate)
	wantBatch(t, "1 after the limit", g, w, 0, 0, true)
	want(t, "Take after the batches", take(t, s, "batch", 1, rate), 10, 0, true)

	g, w = takeBatch(t, s, "batch-exact", 10, rate)
	wantBatch(t, "the whole limit at once", g, w, 10, 0, false)
	g, w = takeBatch(t, s, "batch-huge", math.MaxInt64, rate)
	wantBatch(t, "far beyond the limit", g, w, 10, 0, true)
	for i := range 3 {
		g, w = takeBatch(t, s, "batch-huge", math.MaxInt64, rate)
		wantBatch(t, fmt.Sprintf("far beyond the limit again (%d)", i+1), g, w, 0, 0, true)
	}
}

// testBatchSharesCount: Take and TakeBatch count in the same counter.
func testBatchSharesCount(t *testing.T, s ratelimit.BatchStore) {
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	want(t, "Take 3", take(t, s, "shared", 3, rate), 10, 7, false)
	g, w := takeBatch(t, s, "shared", 3, rate)
	wantBatch(t, "then TakeBatch 3", g, w, 3, 4, false)
	want(t, "then Take 4", take(t, s, "shared", 4, rate), 10, 0, false)
	g, w = takeBatch(t, s, "shared", 1, rate)
	wantBatch(t, "then TakeBatch 1", g, w, 0, 0, true)
}

// testBatchInvalid: TakeBatch of n < 1 or at an invalid rate fails and counts
// nothing.
func testBatchInvalid(t *testing.T, s ratelimit.BatchStore) {
	for _, tc := range []struct {
		n    int64
		rate ratelimit.Rate
	}{
		{0, minute},
		{-1, minute},
		{1, ratelimit.Rate{}},
		{1, ratelimit.Rate{Limit: 5, Period: time.Microsecond}},
	} {
		if g, w, err := s.TakeBatch(context.Background(), "batch-invalid", tc.n, tc.rate); err == nil {
			t.Errorf("TakeBatch(%d, %+v) = %d, %+v, nil; want an error", tc.n, tc.rate, g, w)
		}
	}
	g, w := takeBatch(t, s, "batch-invalid", 2, minute)
	wantBatch(t, "first valid batch", g, w, 2, 3, false)
}

// testBatchConcurrentExact: concurrent batches of 1 to 7 on a limit of 100 are
// granted exactly 100 in all, and at most one of them in part (the one that
// crossed the limit).
func testBatchConcurrentExact(t *testing.T, s ratelimit.BatchStore) {
	const limit = 100
	rate := ratelimit.Rate{Limit: limit, Period: time.Minute}
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		total, broken int64
		start         = make(chan struct{})
	)
	for i := range 200 {
		n := int64(1 + i%7)
		wg.Go(func() {
			<-start
			g, w, err := s.TakeBatch(context.Background(), "batch-race", n, rate)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("TakeBatch(%d): %v", n, err)
			case g < 0 || g > n || (g == n) == w.Reached && g > 0:
				t.Errorf("TakeBatch(%d) granted %d with %+v", n, g, w)
			case g > 0 && g < n:
				broken++
			}
			total += g
		})
	}
	close(start)
	wg.Wait()
	if total != limit || broken > 1 {
		t.Fatalf("batches on a limit of %d: %d granted in all, %d in part; want exactly %d, at most one in part", limit, total, broken, limit)
	}
}

// testBatchResetIsSafe: TakeBatch's Reset is a period after the window opened or
// earlier, never after the window's end: a batch answered before its Reset is
// still in its window, and once the window ends the next batch opens another.
func testBatchResetIsSafe(t *testing.T, s ratelimit.BatchStore) {
	rate := ratelimit.Rate{Limit: 2, Period: time.Second}
	before := time.Now()
	g, first := takeBatch(t, s, "batch-reset", 1, rate)
	after := time.Now()
	wantBatch(t, "first batch", g, first, 1, 1, false)
	if lo, hi := before.Add(rate.Period-time.Second), after.Add(rate.Period); !first.Reset.After(lo) || first.Reset.After(hi) {
		t.Fatalf("Reset %v; want within (%v, %v]", first.Reset, lo, hi)
	}
	time.Sleep(time.Until(first.Reset.Add(-5 * time.Millisecond)))
	g, w, err := s.TakeBatch(context.Background(), "batch-reset", 1, rate)
	answered := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if answered.Before(first.Reset) {
		// Answered before Reset, so counted before it: in the first window.
		wantBatch(t, "a batch answered before Reset", g, w, 1, 0, false)
	} else {
		t.Logf("the second batch was answered %v after Reset: nothing to check", answered.Sub(first.Reset))
	}
	// The window ends within a second after Reset (see Window.Reset).
	time.Sleep(time.Until(first.Reset.Add(time.Second + 20*time.Millisecond)))
	g, next := takeBatch(t, s, "batch-reset", 1, rate)
	wantBatch(t, "the next window's first batch", g, next, 1, 1, false)
	if !next.Reset.After(first.Reset) {
		t.Errorf("the next window resets at %v, not after the first's %v", next.Reset, first.Reset)
	}
}
