package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
)

func TestNewNilStore(t *testing.T) {
	t.Parallel()
	if l, err := ratelimit.New(nil, ratelimit.Config{}); err == nil || !strings.Contains(err.Error(), "nil store") {
		t.Fatalf("New(nil) = %v, %v; want an error", l, err)
	}
}

// TestSentinels: the errors answer through the problem table with their own
// rows.
func TestSentinels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		detail string
	}{
		{ratelimit.ErrLimited, 429, problem.Detail(problem.RateLimited)},
		{fmt.Errorf("%w: dial tcp: refused", ratelimit.ErrUnavailable), 503, problem.Detail(problem.Unavailable)},
	} {
		status, detail, _ := problem.For(tc.err)
		if status != tc.status || detail != tc.detail {
			t.Errorf("%v: answered %d %q, want %d %q", tc.err, status, detail, tc.status, tc.detail)
		}
	}
}

// TestAllow follows a bucket through its window: counted down to 0, refused by
// the store once, then by the deny cache with the same window until its reset,
// after which the store is asked again.
func TestAllow(t *testing.T) {
	t.Parallel()
	store := newCountingStore(memstore.New())
	clk := testenv.NewClock(time.Now())
	l := newLimiter(t, store, ratelimit.Config{Now: clk.Now})
	ctx := context.Background()
	var refused ratelimit.Result
	for i := range 20 {
		res := l.Allow(ctx, "ak:gold:h1", gold)
		if res.Err != nil || res.Limit != 3 {
			t.Fatalf("request %d: %+v", i+1, res)
		}
		switch {
		case i < 3:
			if !res.Allowed || res.Reached || res.Local || res.Remaining != int64(2-i) {
				t.Fatalf("request %d: %+v; want allowed with %d remaining", i+1, res, 2-i)
			}
		case i == 3:
			if res.Allowed || !res.Reached || res.Local || res.Remaining != 0 {
				t.Fatalf("request 4: %+v; want refused by the store", res)
			}
			refused = res
		default:
			if res.Allowed || !res.Reached || !res.Local || res.Remaining != 0 || !res.Reset.Equal(refused.Reset) {
				t.Fatalf("request %d: %+v; want refused from the deny cache with the store's window %+v", i+1, res, refused.Window)
			}
		}
	}
	if got := store.takes.Load(); got != 4 {
		t.Fatalf("store asked %d times for 20 requests, want 4 (3 allowed, 1 refused)", got)
	}
	if got, want := l.Stats(), (ratelimit.Stats{LocalDenials: 16, DenyCacheEntries: 1, StoreCalls: 4}); got != want {
		t.Errorf("Stats %+v, want %+v", got, want)
	}
	// Another bucket is not refused by the first one's entry.
	if res := l.Allow(ctx, "ak:gold:h2", gold); !res.Allowed {
		t.Errorf("another bucket: %+v", res)
	}
	// Up to the reset the deny cache answers; at it, the store is asked again.
	// (The store's window, on the wall clock, is still exhausted.)
	clk.Set(refused.Reset.Add(-time.Nanosecond))
	if res := l.Allow(ctx, "ak:gold:h1", gold); !res.Local {
		t.Fatalf("just before the reset: %+v, want a local refusal", res)
	}
	clk.Set(refused.Reset)
	if res := l.Allow(ctx, "ak:gold:h1", gold); res.Allowed || res.Local {
		t.Fatalf("at the reset: %+v, want the store's refusal", res)
	}
	if got := store.buckets()["ak:gold:h1"]; got != 5 {
		t.Fatalf("store asked %d times about the bucket, want 5 once the deny entry expired", got)
	}
}

// TestDenyCacheSize: a negative size turns the cache off (every refusal asks the
// store); a positive one bounds it.
func TestDenyCacheSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		store := newCountingStore(memstore.New())
		l := newLimiter(t, store, ratelimit.Config{DenyCacheSize: -1})
		for range 10 {
			if res := l.Allow(ctx, "b", gold); res.Local {
				t.Fatalf("local refusal with the cache off: %+v", res)
			}
		}
		if got := store.takes.Load(); got != 10 {
			t.Errorf("store asked %d times, want 10", got)
		}
		if s := l.Stats(); s.LocalDenials != 0 || s.DenyCacheEntries != 0 {
			t.Errorf("Stats %+v", s)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, memstore.New(), ratelimit.Config{DenyCacheSize: 2})
		for i := range 10 {
			for range 4 {
				l.Allow(ctx, fmt.Sprint("b", i), gold)
			}
		}
		if got := l.Stats().DenyCacheEntries; got != 2 {
			t.Errorf("%d entries, want the bound, 2", got)
		}
	})
}

// TestReachedWindow: a refusal reports Remaining 0 whatever the store says.
func TestReachedWindow(t *testing.T) {
	t.Parallel()
	reset := time.Now().Add(time.Minute)
	l := newLimiter(t, storeFunc(func(context.Context, string, int64, ratelimit.Rate) (ratelimit.Window, error) {
		return ratelimit.Window{Limit: 3, Remaining: 2, Reset: reset, Reached: true}, nil
	}), ratelimit.Config{})
	for _, local := range []bool{false, true} {
		res := l.Allow(context.Background(), "b", gold)
		if want := (ratelimit.Result{Window: ratelimit.Window{Limit: 3, Reset: reset, Reached: true}, Local: local}); res != want {
			t.Errorf("Allow = %+v, want %+v", res, want)
		}
	}
}

// TestConcurrentExact: of 2×N concurrent requests on a limit of N exactly N are
// allowed, with the deny cache in the way.
func TestConcurrentExact(t *testing.T) {
	t.Parallel()
	const n = 50
	l := newLimiter(t, memstore.New(), ratelimit.Config{})
	rate := ratelimit.Rate{Limit: n, Period: time.Minute}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 2 * n {
		wg.Go(func() {
			<-start
			res := l.Allow(context.Background(), "race", rate)
			switch {
			case res.Err != nil:
				t.Error(res.Err)
			case res.Allowed:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if allowed.Load() != n || refused.Load() != n {
		t.Fatalf("allowed %d, refused %d; want %d and %d", allowed.Load(), refused.Load(), n, n)
	}
}

// TestStoreBreaker: after three consecutive store errors the store is not asked
// for a second (the policy applies at once), then one request probes it, and a
// success resumes counting. Every request decided by the policy reports the
// failure and counts in Stats.StoreErrors.
func TestStoreBreaker(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		t.Run(fmt.Sprint("failClosed=", failClosed), func(t *testing.T) {
			t.Parallel()
			flaky := newFlakyStore()
			store := newCountingStore(flaky)
			clk := testenv.NewClock(time.Now())
			l := newLimiter(t, store, ratelimit.Config{
				FailClosed: failClosed,
				Logger:     slogText(io.Discard),
				Now:        clk.Now,
			})
			failing := func(probe bool) {
				t.Helper()
				res := l.Allow(context.Background(), "ak:gold:brk", gold)
				if res.Allowed == failClosed || !errors.Is(res.Err, ratelimit.ErrUnavailable) || res.Window != (ratelimit.Window{Limit: 3}) || res.Local {
					t.Fatalf("%+v; want Allowed %v, an ErrUnavailable, a window with only the limit", res, !failClosed)
				}
				if probe != errors.Is(res.Err, errFlaky) {
					t.Fatalf("Err %v: asked the store %v, want %v", res.Err, !probe, probe)
				}
			}
			flaky.fail.Store(true)
			for i := range 10 {
				failing(i < 3)
			}
			if got := store.takes.Load(); got != 3 {
				t.Fatalf("store asked %d times during the outage, want 3", got)
			}
			// Within the cooldown nobody probes; after it, one request does.
			clk.Add(900 * time.Millisecond)
			failing(false)
			clk.Add(200 * time.Millisecond)
			failing(true)
			failing(false)
			if got := store.takes.Load(); got != 4 {
				t.Fatalf("store asked %d times, want 4 (one probe)", got)
			}
			// The store is back: the next probe succeeds and counting resumes.
			flaky.fail.Store(false)
			clk.Add(1100 * time.Millisecond)
			for i := range 3 {
				if res := l.Allow(context.Background(), "ak:gold:brk", gold); !res.Allowed || res.Err != nil || res.Remaining != int64(2-i) {
					t.Fatalf("after recovery, request %d: %+v", i+1, res)
				}
			}
			if got := store.takes.Load(); got != 7 {
				t.Fatalf("store asked %d times, want 7 after recovery", got)
			}
			if got := l.Stats().StoreErrors; got != 13 {
				t.Errorf("StoreErrors %d, want 13 (every request decided by the policy)", got)
			}
			// One failure after a success does not open the breaker.
			flaky.fail.Store(true)
			failing(true)
			flaky.fail.Store(false)
			if res := l.Allow(context.Background(), "ak:gold:other", gold); !res.Allowed || res.Err != nil {
				t.Fatalf("after a single failure: %+v", res)
			}
		})
	}
}

// cancelingStore is a store whose client leaves while it is asked: it cancels
// the request's context, then fails with err, or with ctx's error when err is
// nil (as a network client would).
func cancelingStore(cancel context.CancelFunc, err error) *countingStore {
	return newCountingStore(storeFunc(func(ctx context.Context, _ string, _ int64, _ ratelimit.Rate) (ratelimit.Window, error) {
		cancel()
		<-ctx.Done()
		if err != nil {
			return ratelimit.Window{}, err
		}
		return ratelimit.Window{}, ctx.Err()
	}))
}

// TestCanceledIsNotAFailure: a request whose context is canceled while the
// store is asked (its client left) is refused, reports ctx's error, and neither
// trips the breaker nor counts or logs as a store error.
func TestCanceledIsNotAFailure(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		var logs testenv.Buffer
		var cancels []context.CancelFunc
		store := cancelingStore(func() { cancels[len(cancels)-1]() }, nil)
		l := newLimiter(t, store, ratelimit.Config{FailClosed: failClosed, Logger: slogText(&logs)})
		for range 10 {
			ctx, cancel := context.WithCancel(context.Background())
			cancels = append(cancels, cancel)
			res := l.Allow(ctx, "ak:gold:gone", gold)
			if res.Allowed || !errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, ratelimit.ErrUnavailable) {
				t.Fatalf("failClosed=%v: canceled request: %+v; want refused with context.Canceled", failClosed, res)
			}
		}
		if got := store.takes.Load(); got != 10 {
			t.Errorf("failClosed=%v: store asked %d times, want 10 (the breaker stayed closed)", failClosed, got)
		}
		if s := l.Stats(); s.StoreErrors != 0 || s.StoreCalls != 10 {
			t.Errorf("failClosed=%v: Stats %+v, want no StoreErrors and 10 StoreCalls", failClosed, s)
		}
		if logs.String() != "" {
			t.Errorf("failClosed=%v: logged %q", failClosed, logs.String())
		}
	}
	// While the breaker is open, a canceled request is not decided by the
	// policy either.
	flaky := newFlakyStore()
	flaky.fail.Store(true)
	l := newLimiter(t, flaky, ratelimit.Config{Logger: slogText(io.Discard)})
	for range 3 {
		l.Allow(context.Background(), "b", gold)
	}
	canceled, stop := context.WithCancel(context.Background())
	stop()
	if res := l.Allow(canceled, "b", gold); res.Allowed || !errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, ratelimit.ErrUnavailable) {
		t.Fatalf("canceled request, breaker open: %+v", res)
	}
	if got := l.Stats().StoreErrors; got != 3 {
		t.Fatalf("StoreErrors %d, want the 3 that opened the breaker", got)
	}
	// A store that fails with an error of its own once ctx is canceled: Err
	// wraps both.
	ctx, cancel := context.WithCancel(context.Background())
	l = newLimiter(t, cancelingStore(cancel, errFlaky), ratelimit.Config{})
	if res := l.Allow(ctx, "b", gold); res.Allowed || !errors.Is(res.Err, context.Canceled) || !errors.Is(res.Err, errFlaky) {
		t.Fatalf("%+v; want refused, matching context.Canceled and the store's error", res)
	}
}

// TestDeadlineIsAFailure: a request whose deadline passes while the store is
// asked is a store failure (the store was too slow for it): decided by the
// policy, reporting ErrUnavailable and context.DeadlineExceeded, counted,
// logged, and counted by the breaker.
func TestDeadlineIsAFailure(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		for _, storeErr := range []error{nil, errFlaky} {
			var logs testenv.Buffer
			// The store answers once the deadline has passed: with ctx's error,
			// or with one of its own (an i/o timeout, say).
			store := newCountingStore(storeFunc(func(ctx context.Context, _ string, _ int64, _ ratelimit.Rate) (ratelimit.Window, error) {
				ctx.(*lateCtx).expire()
				if storeErr != nil {
					return ratelimit.Window{}, storeErr
				}
				return ratelimit.Window{}, ctx.Err()
			}))
			l := newLimiter(t, store, ratelimit.Config{FailClosed: failClosed, Logger: slogText(&logs)})
			what := fmt.Sprintf("failClosed=%v, store error %v", failClosed, storeErr)
			for i := range 3 {
				res := l.Allow(newLateCtx(), "ak:gold:slow", gold)
				if res.Allowed == failClosed || !errors.Is(res.Err, ratelimit.ErrUnavailable) || !errors.Is(res.Err, context.DeadlineExceeded) || res.Local {
					t.Fatalf("%s: request %d: %+v; want Allowed %v, ErrUnavailable and DeadlineExceeded", what, i+1, res, !failClosed)
				}
				if storeErr != nil && !errors.Is(res.Err, storeErr) {
					t.Fatalf("%s: request %d: Err %v does not wrap the store's error", what, i+1, res.Err)
				}
			}
			// Three of them opened the breaker.
			for i := range 2 {
				if res := l.Allow(newLateCtx(), "ak:gold:slow", gold); res.Allowed == failClosed || !errors.Is(res.Err, ratelimit.ErrUnavailable) {
					t.Fatalf("%s: request %d, breaker open: %+v", what, i+4, res)
				}
			}
			if got := store.takes.Load(); got != 3 {
				t.Errorf("%s: store asked %d times, want 3 (then the breaker opened)", what, got)
			}
			if got := l.Stats().StoreErrors; got != 5 {
				t.Errorf("%s: StoreErrors %d, want 5", what, got)
			}
			if out := logs.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "limiter store failed") {
				t.Errorf("%s: log:\n%s", what, out)
			}
		}
	}
}

// TestDoneBeforeAsking: a request whose context is already done, canceled or
// past its deadline, is refused with the context's error without asking the
// store; nothing is counted or logged, and the breaker does not hear of it.
func TestDoneBeforeAsking(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, ctx := range []context.Context{canceled, expired} {
		var logs testenv.Buffer
		store := newCountingStore(memstore.New())
		l := newLimiter(t, store, ratelimit.Config{Logger: slogText(&logs)})
		for range 5 {
			res := l.Allow(ctx, "ak:gold:late", gold)
			if res.Allowed || !errors.Is(res.Err, ctx.Err()) || errors.Is(res.Err, ratelimit.ErrUnavailable) {
				t.Fatalf("ctx %v: %+v; want refused with the context's error", ctx.Err(), res)
			}
		}
		if got, s := store.takes.Load(), l.Stats(); got != 0 || s != (ratelimit.Stats{}) || logs.String() != "" {
			t.Errorf("ctx %v: store asked %d times, Stats %+v, log %q; want nothing", ctx.Err(), got, s, logs.String())
		}
		// The bucket is untouched, and the breaker closed.
		if res := l.Allow(context.Background(), "ak:gold:late", gold); !res.Allowed || res.Remaining != 2 {
			t.Errorf("ctx %v: then a live request: %+v", ctx.Err(), res)
		}
	}
}

// TestStoreErrorLog: store errors are logged at most once a second, each line
// counting the ones suppressed; lines carry the policy's outcome, the bucket's
// kind and the rate, never the bucket.
func TestStoreErrorLog(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		var logs testenv.Buffer
		flaky := newFlakyStore()
		flaky.fail.Store(true)
		clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
		l := newLimiter(t, flaky, ratelimit.Config{FailClosed: failClosed, Logger: slogText(&logs), Now: clk.Now})
		for range 4 {
			l.Allow(context.Background(), "ak:gold:secrethash", gold)
		}
		clk.Add(1100 * time.Millisecond)
		l.Allow(context.Background(), "ip:192.0.2.1", gold)
		out := logs.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		outcome := map[bool]string{false: "allowed", true: "rejected"}[failClosed]
		if len(lines) != 2 || !strings.Contains(lines[0], "suppressed=0") || !strings.Contains(lines[1], "suppressed=3") {
			t.Fatalf("failClosed=%v: log lines:\n%s", failClosed, out)
		}
		for i, kind := range []string{"ak", "ip"} {
			for _, want := range []string{`msg="ratelimit: limiter store failed"`, "level=ERROR", "outcome=" + outcome, "kind=" + kind, "rate=3-M", "err="} {
				if !strings.Contains(lines[i], want) {
					t.Errorf("failClosed=%v: line %d lacks %s:\n%s", failClosed, i+1, want, lines[i])
				}
			}
		}
		if strings.Contains(out, "secrethash") || strings.Contains(out, "192.0.2.1") {
			t.Errorf("the log names a bucket:\n%s", out)
		}
	}
}

// TestInvalidRate: a request at an invalid rate is refused with an error, and
// the store is neither asked nor counted as failing.
func TestInvalidRate(t *testing.T) {
	t.Parallel()
	store := newCountingStore(memstore.New())
	l := newLimiter(t, store, ratelimit.Config{})
	for _, rate := range []ratelimit.Rate{{}, {Limit: 0, Period: time.Minute}, {Limit: 5}, {Limit: 5, Period: time.Microsecond}} {
		res := l.Allow(context.Background(), "b", rate)
		if res.Allowed || res.Err == nil || errors.Is(res.Err, ratelimit.ErrUnavailable) {
			t.Errorf("rate %+v: %+v; want refused with an error", rate, res)
		}
	}
	if store.takes.Load() != 0 || l.Stats() != (ratelimit.Stats{}) {
		t.Errorf("store asked %d times, Stats %+v", store.takes.Load(), l.Stats())
	}
}

// TestAllowDoesNotAllocate: with memstore, an allowed request, a refusal from
// the deny cache and a decision while the breaker is open allocate nothing.
func TestAllowDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, memstore.New(), ratelimit.Config{})
	l.Allow(ctx, "ak:free:k", free)
	if n := testing.AllocsPerRun(100, func() { l.Allow(ctx, "ak:free:k", free) }); n != 0 {
		t.Errorf("allowed request: %v allocations", n)
	}
	for range 4 {
		l.Allow(ctx, "ak:gold:k", gold)
	}
	if n := testing.AllocsPerRun(100, func() { l.Allow(ctx, "ak:gold:k", gold) }); n != 0 {
		t.Errorf("local refusal: %v allocations", n)
	}
	flaky := newFlakyStore()
	flaky.fail.Store(true)
	open := newLimiter(t, flaky, ratelimit.Config{Logger: slogText(io.Discard)})
	for range 3 {
		open.Allow(ctx, "ak:free:k", free)
	}
	if n := testing.AllocsPerRun(100, func() { open.Allow(ctx, "ak:free:k", free) }); n != 0 {
		t.Errorf("breaker open: %v allocations", n)
	}
}
