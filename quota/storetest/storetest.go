// Package storetest is the conformance suite that every quota.Store implementation
// passes against its real backend.
//
// A store's test calls Run with a function that builds a Harness on a fresh, empty
// backend; no case is skipped. The suite sets every quota through Store.Put and
// injects every instant it reserves at, so 30-day cycles are tested without
// sleeping. Bench measures Consume on a store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/quota"
)

// Harness is a Store under test plus the backdoor the suite needs to check what
// the backend stored without going through the Store. Both fields are required.
type Harness struct {
	// Store is the store under test, on a fresh backend. The suite sets its quotas
	// with Store.Put; a store whose quotas live in rows that something else creates
	// (quota/sqlstore on the api_keys table) wraps its Put to create the row first,
	// as the application does.
	Store quota.Store
	// Stored reads quota id's calls used and cycle start as the backend holds
	// them, even when the cycle is due. It fails the test if id is unknown.
	Stored func(id string) (used int64, cycleStart time.Time)
}

// Run runs the suite, each case as a parallel subtest of t. newHarness returns a
// harness on a fresh backend whose store counts in cycles of length cycle (zero
// means quota.DefaultCycle); it is called once per subtest, in parallel, and
// should fail t rather than return on error.
func Run(t *testing.T, newHarness func(t *testing.T, cycle time.Duration) Harness) {
	cases := []struct {
		name string
		f    func(*testing.T, factory)
	}{
		{"Exactness", testExactness},
		{"ExactnessReserveN", testExactnessReserveN},
		{"CycleBoundary", testCycleBoundary},
		{"ConcurrentReset", testConcurrentReset},
		{"RefusedNotCounted", testRefusedNotCounted},
		{"DueButRefused", testDueButRefused},
		{"NotFound", testNotFound},
		{"ReserveN", testReserveN},
		{"InvalidN", testInvalidN},
		{"KeysIndependent", testKeysIndependent},
		{"CustomCycle", testCustomCycle},
		{"Usage", testUsage},
		{"Release", testRelease},
		{"ReleaseAfterRestart", testReleaseAfterRestart},
		{"ReleaseNeverBelowZero", testReleaseNeverBelowZero},
		{"ConcurrentRelease", testConcurrentRelease},
		{"PutReplaces", testPutReplaces},
		{"PutInvalid", testPutInvalid},
		{"ConcurrentPut", testConcurrentPut},
		{"LargeLimit", testLargeLimit},
		{"CanceledContext", testCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.f(t, newHarness)
		})
	}
}

// factory is the type of Run's newHarness.
type factory = func(t *testing.T, cycle time.Duration) Harness

// base is the cycle start most cases use: a whole second, which every backend
// stores exactly.
var base = time.Date(2026, 1, 15, 9, 30, 0, 0, time.UTC)

const day = 24 * time.Hour

// consumers is how many goroutines race on one quota in the concurrency cases.
const consumers = 1000

// race runs count reservations of n calls each on quota id at now, all released at
// once, and returns the calls granted in total and the Used of every usage that
// came with a grant. Any error fails t: Reserve reports a refusal as 0 granted.
func race(t *testing.T, s quota.Store, id string, count int, n int64, now time.Time) (granted int64, useds []int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
		errs  []error
	)
	for range count {
		wg.Go(func() {
			<-start
			g, u, err := s.Reserve(ctx, id, n, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			granted += g
			if g > 0 {
				useds = append(useds, u.Used)
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
		t.Errorf("Reserve(%q, %d) error: %v", id, n, err)
	}
	return granted, useds
}

// wantStored fails t unless the backend holds used calls and a cycle starting at
// start for quota id.
func wantStored(t *testing.T, h Harness, id string, used int64, start time.Time) {
	t.Helper()
	gotUsed, gotStart := h.Stored(id)
	if gotUsed != used || !gotStart.Equal(start) {
		t.Errorf("stored %q: used %d, cycle start %v; want %d, %v", id, gotUsed, gotStart, used, start)
	}
}

// wantUsage fails t unless u is limit/used in a cycle that starts at start and
// ends cycle later, with the matching Remaining.
func wantUsage(t *testing.T, what string, u quota.Usage, limit, used int64, start time.Time, cycle time.Duration) {
	t.Helper()
	if u.Limit != limit || u.Used != used || !u.CycleStart.Equal(start) || !u.Reset.Equal(start.Add(cycle)) {
		t.Errorf("%s: usage %+v; want limit %d, used %d, cycle %v to %v", what, u, limit, used, start, start.Add(cycle))
	}
	if want := max(limit-used, 0); u.Remaining() != want {
		t.Errorf("%s: Remaining() = %d, want %d", what, u.Remaining(), want)
	}
}

func consume(t *testing.T, s quota.Store, id string, now time.Time) (quota.Usage, error) {
	t.Helper()
	return quota.Consume(context.Background(), s, id, now)
}

// put sets quota id through the store, failing t on error.
func put(t *testing.T, h Harness, id string, limit int64, cycleStart time.Time) {
	t.Helper()
	if err := h.Store.Put(context.Background(), id, limit, cycleStart); err != nil {
		t.Fatalf("Put(%q, %d, %v): %v", id, limit, cycleStart, err)
	}
}

func testExactness(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 100, base)
	now := base.Add(10 * day)
	granted, useds := race(t, h.Store, "k", consumers, 1, now)
	if granted != 100 {
		t.Errorf("%d consumers on a limit of 100: granted %d, want exactly 100", consumers, granted)
	}
	// Each granted call saw its own count: the Used values are exactly 1..100.
	seen := make(map[int64]bool, len(useds))
	for _, u := range useds {
		if u < 1 || u > 100 || seen[u] {
			t.Errorf("granted call reported Used=%d (a duplicate or out of 1..100)", u)
		}
		seen[u] = true
	}
	wantStored(t, h, "k", 100, base)
	u, err := consume(t, h.Store, "k", now)
	if !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("Consume after exhaustion: err = %v, want ErrExceeded", err)
	}
	wantUsage(t, "refused usage", u, 100, 100, base, quota.DefaultCycle)
}

func testExactnessReserveN(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 100, base)
	// 200 reservations of 3: 33 full grants and one partial grant of 1.
	granted, useds := race(t, h.Store, "k", 200, 3, base.Add(day))
	if granted != 100 {
		t.Errorf("200 reservations of 3 on a limit of 100: granted %d, want exactly 100", granted)
	}
	if len(useds) != 34 {
		t.Errorf("%d reservations were granted something, want 34 (33×3 + 1)", len(useds))
	}
	wantStored(t, h, "k", 100, base)
}

func testCycleBoundary(t *testing.T, newHarness factory) {
	const limit = 5
	cycle := quota.DefaultCycle
	end := base.Add(cycle)
	steps := []struct {
		name      string
		at        time.Time
		wantUsed  int64
		wantStart time.Time
	}{
		{"first call of the cycle", base.Add(time.Hour), 1, base},
		{"cycle start+30d-1s counts in the old cycle", end.Add(-time.Second), 2, base},
		{"cycle start+30d opens a new cycle", end, 1, end},
		{"the new cycle counts on", end.Add(time.Second), 2, end},
		{"one second before the new cycle ends", end.Add(cycle - time.Second), 3, end},
		{"the next cycle starts at the call, not at the old end", end.Add(cycle + 90*time.Minute), 1, end.Add(cycle + 90*time.Minute)},
	}
	h := newHarness(t, 0)
	put(t, h, "k", limit, base)
	for _, st := range steps {
		u, err := consume(t, h.Store, "k", st.at)
		if err != nil {
			t.Fatalf("%s: Consume: %v", st.name, err)
		}
		wantUsage(t, st.name, u, limit, st.wantUsed, st.wantStart, cycle)
		wantStored(t, h, "k", st.wantUsed, st.wantStart)
	}
}

func testConcurrentReset(t *testing.T, newHarness factory) {
	const limit = 10
	h := newHarness(t, 0)
	put(t, h, "k", limit, base)
	if g, _, err := h.Store.Reserve(context.Background(), "k", limit, base.Add(day)); err != nil || g != limit {
		t.Fatalf("exhausting the quota: granted %d, err %v; want %d, nil", g, err, limit)
	}
	boundary := base.Add(quota.DefaultCycle)
	granted, _ := race(t, h.Store, "k", consumers, 1, boundary)
	if granted != limit {
		t.Errorf("%d concurrent calls at the boundary: granted %d, want exactly %d (one reset)", consumers, granted, limit)
	}
	wantStored(t, h, "k", limit, boundary)
	u, err := consume(t, h.Store, "k", boundary.Add(time.Second))
	if !errors.Is(err, quota.ErrExceeded) {
		t.Errorf("call after the reset cycle is spent: err = %v, want ErrExceeded", err)
	}
	wantUsage(t, "after the reset", u, limit, limit, boundary, quota.DefaultCycle)
}

func testRefusedNotCounted(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 2, base)
	now := base.Add(day)
	for i := range 2 {
		if _, err := consume(t, h.Store, "k", now); err != nil {
			t.Fatalf("call %d of 2: %v", i+1, err)
		}
	}
	for i := range 5 {
		u, err := consume(t, h.Store, "k", now.Add(time.Duration(i)*time.Minute))
		if !errors.Is(err, quota.ErrExceeded) {
			t.Fatalf("refused call %d: err = %v, want ErrExceeded", i+1, err)
		}
		wantUsage(t, "refused call", u, 2, 2, base, quota.DefaultCycle)
	}
	wantStored(t, h, "k", 2, base)
}

// testDueButRefused: a quota with a limit of 0 is refused even when its cycle is due;
// the refusal reports the fresh cycle it would have opened and writes nothing.
func testDueButRefused(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 0, base)
	now := base.Add(quota.DefaultCycle + time.Hour)
	u, err := consume(t, h.Store, "k", now)
	if !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("Consume on a limit of 0: err = %v, want ErrExceeded", err)
	}
	wantUsage(t, "due and refused", u, 0, 0, now, quota.DefaultCycle)
	wantStored(t, h, "k", 0, base)
}

// testNotFound: every method but Put answers an unknown ID with ErrNotFound, and
// IDs match exactly.
func testNotFound(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 10, base)
	for _, id := range []string{"nope", "", "K", "k ", "' OR 1=1 --"} {
		g, _, err := h.Store.Reserve(ctx, id, 1, base.Add(day))
		if !errors.Is(err, quota.ErrNotFound) || g != 0 {
			t.Errorf("Reserve(%q): granted %d, err %v; want 0, ErrNotFound", id, g, err)
		}
		if err := h.Store.Release(ctx, id, 1, base); !errors.Is(err, quota.ErrNotFound) {
			t.Errorf("Release(%q): err = %v, want ErrNotFound", id, err)
		}
		if _, err := h.Store.Usage(ctx, id, base); !errors.Is(err, quota.ErrNotFound) {
			t.Errorf("Usage(%q): err = %v, want ErrNotFound", id, err)
		}
	}
	wantStored(t, h, "k", 0, base)
}

func testReserveN(t *testing.T, newHarness factory) {
	const limit = 10
	end := base.Add(quota.DefaultCycle)
	type step struct {
		n           int64
		at          time.Time
		wantGranted int64
		wantUsed    int64
		wantStart   time.Time
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"whole grants then a partial one", []step{
			{7, base, 7, 7, base},
			{2, base.Add(time.Hour), 2, 9, base},
			{5, base.Add(2 * time.Hour), 1, 10, base},
			{1, base.Add(3 * time.Hour), 0, 10, base},
		}},
		{"n above the limit grants the limit", []step{
			{25, base.Add(time.Hour), limit, limit, base},
		}},
		{"n across a due boundary counts in the new cycle", []step{
			{8, base.Add(day), 8, 8, base},
			{5, end.Add(-time.Second), 2, 10, base},
			{5, end, 5, 5, end},
			{9, end.Add(time.Minute), 5, 10, end},
		}},
		{"n above the limit at a due boundary grants the limit", []step{
			{10, base.Add(day), 10, 10, base},
			{15, end, 10, 10, end},
		}},
	}
	h := newHarness(t, 0)
	for i, c := range cases {
		id := fmt.Sprintf("k%d", i)
		put(t, h, id, limit, base)
		for j, st := range c.steps {
			what := fmt.Sprintf("%s: step %d: Reserve(%d)", c.name, j+1, st.n)
			g, u, err := h.Store.Reserve(context.Background(), id, st.n, st.at)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if g != st.wantGranted {
				t.Errorf("%s granted %d, want %d", what, g, st.wantGranted)
			}
			wantUsage(t, what, u, limit, st.wantUsed, st.wantStart, quota.DefaultCycle)
			wantStored(t, h, id, st.wantUsed, st.wantStart)
		}
	}
}

func testInvalidN(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 10, base)
	for _, n := range []int64{0, -1, -1 << 40} {
		g, _, err := h.Store.Reserve(context.Background(), "k", n, base.Add(day))
		if err == nil || g != 0 {
			t.Errorf("Reserve(n=%d): granted %d, err %v; want 0 and an error", n, g, err)
		}
	}
	wantStored(t, h, "k", 0, base)
}

func testKeysIndependent(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "a", 3, base)
	put(t, h, "b", 3, base.Add(day))
	now := base.Add(2 * day)
	for range 3 {
		if _, err := consume(t, h.Store, "a", now); err != nil {
			t.Fatalf("Consume(a): %v", err)
		}
	}
	u, err := consume(t, h.Store, "b", now)
	if err != nil {
		t.Fatalf("Consume(b) after a is spent: %v", err)
	}
	wantUsage(t, "b", u, 3, 1, base.Add(day), quota.DefaultCycle)
	wantStored(t, h, "a", 3, base)
	wantStored(t, h, "b", 1, base.Add(day))
}

func testCustomCycle(t *testing.T, newHarness factory) {
	const cycle = time.Hour
	h := newHarness(t, cycle)
	put(t, h, "k", 2, base)
	end := base.Add(cycle)
	steps := []struct {
		at        time.Time
		wantErr   error
		wantUsed  int64
		wantStart time.Time
	}{
		{base.Add(time.Minute), nil, 1, base},
		{base.Add(2 * time.Minute), nil, 2, base},
		{end.Add(-time.Second), quota.ErrExceeded, 2, base},
		{end, nil, 1, end},
		{end.Add(cycle - time.Second), nil, 2, end},
		{end.Add(cycle), nil, 1, end.Add(cycle)},
	}
	for i, st := range steps {
		u, err := consume(t, h.Store, "k", st.at)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d at %v: err = %v, want %v", i+1, st.at, err, st.wantErr)
		}
		wantUsage(t, fmt.Sprintf("step %d", i+1), u, 2, st.wantUsed, st.wantStart, cycle)
		wantStored(t, h, "k", st.wantUsed, st.wantStart)
	}
}

// testRelease: released calls count no more; a quota refused at its limit is granted
// again after a release.
func testRelease(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 3, base)
	now := base.Add(day)
	g, u, err := h.Store.Reserve(ctx, "k", 3, now)
	if err != nil || g != 3 {
		t.Fatalf("Reserve(3) on a limit of 3: granted %d, err %v", g, err)
	}
	if _, err := consume(t, h.Store, "k", now); !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("Consume at the limit: err = %v, want ErrExceeded", err)
	}
	if err := h.Store.Release(ctx, "k", 2, u.CycleStart); err != nil {
		t.Fatalf("Release(2): %v", err)
	}
	wantStored(t, h, "k", 1, base)
	u, err = consume(t, h.Store, "k", now.Add(time.Minute))
	if err != nil {
		t.Fatalf("Consume after the release: %v", err)
	}
	wantUsage(t, "after releasing 2 of 3", u, 3, 2, base, quota.DefaultCycle)
	for _, n := range []int64{0, -1} {
		if err := h.Store.Release(ctx, "k", n, base); err == nil {
			t.Errorf("Release(n=%d): nil error, want one", n)
		}
	}
	wantStored(t, h, "k", 2, base)
}

// testReleaseAfterRestart: a release for a cycle that has restarted since gives
// nothing back in the new one.
func testReleaseAfterRestart(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 5, base)
	_, old, err := h.Store.Reserve(ctx, "k", 2, base.Add(day))
	if err != nil {
		t.Fatal(err)
	}
	end := base.Add(quota.DefaultCycle)
	if g, _, err := h.Store.Reserve(ctx, "k", 3, end); err != nil || g != 3 {
		t.Fatalf("Reserve(3) opening the next cycle: granted %d, err %v", g, err)
	}
	if err := h.Store.Release(ctx, "k", 2, old.CycleStart); err != nil {
		t.Fatalf("Release for the old cycle: %v", err)
	}
	wantStored(t, h, "k", 3, end)
	if err := h.Store.Release(ctx, "k", 1, end); err != nil {
		t.Fatalf("Release for the current cycle: %v", err)
	}
	wantStored(t, h, "k", 2, end)
}

func testReleaseNeverBelowZero(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 5, base)
	if g, _, err := h.Store.Reserve(ctx, "k", 2, base.Add(day)); err != nil || g != 2 {
		t.Fatalf("Reserve(2): granted %d, err %v", g, err)
	}
	for _, n := range []int64{5, 1} {
		if err := h.Store.Release(ctx, "k", n, base); err != nil {
			t.Fatalf("Release(%d): %v", n, err)
		}
		wantStored(t, h, "k", 0, base)
	}
	if g, _, err := h.Store.Reserve(ctx, "k", 9, base.Add(day)); err != nil || g != 5 {
		t.Errorf("Reserve(9) after over-releasing: granted %d, err %v; want the limit, 5", g, err)
	}
}

// testConcurrentRelease: goroutines reserve one call each and half of those granted
// give it back at once. At no moment are more calls held than the limit, and the
// count ends at exactly what was granted and kept.
func testConcurrentRelease(t *testing.T, newHarness factory) {
	const (
		limit   = 50
		callers = 500
	)
	h := newHarness(t, 0)
	put(t, h, "k", limit, base)
	now := base.Add(day)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		wg                       sync.WaitGroup
		start                    = make(chan struct{})
		held, peak               atomic.Int64
		granted, released, fails atomic.Int64
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			g, u, err := h.Store.Reserve(ctx, "k", 1, now)
			if err != nil {
				t.Errorf("Reserve: %v", err)
				fails.Add(1)
				return
			}
			if g == 0 {
				return
			}
			granted.Add(1)
			// held counts a grant once Reserve has returned it and stops counting
			// it before Release starts, so it never exceeds what the store holds.
			for v := held.Add(1); ; {
				p := peak.Load()
				if v <= p || peak.CompareAndSwap(p, v) {
					break
				}
			}
			if i%2 == 1 {
				return
			}
			held.Add(-1)
			if err := h.Store.Release(ctx, "k", 1, u.CycleStart); err != nil {
				t.Errorf("Release: %v", err)
				fails.Add(1)
				return
			}
			released.Add(1)
		})
	}
	close(start)
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d calls failed", fails.Load())
	}
	if p := peak.Load(); p > limit {
		t.Errorf("%d grants were held at once, more than the limit of %d", p, limit)
	}
	if granted.Load() < limit {
		t.Errorf("granted %d, want at least the limit of %d", granted.Load(), limit)
	}
	wantStored(t, h, "k", granted.Load()-released.Load(), base)
	t.Logf("granted %d, released %d, peak held %d", granted.Load(), released.Load(), peak.Load())
}

// testUsage: Usage reads what a reservation would find and writes nothing.
func testUsage(t *testing.T, newHarness factory) {
	const cycle = time.Hour
	ctx := context.Background()
	h := newHarness(t, cycle)
	put(t, h, "k", 3, base)
	if u, err := h.Store.Usage(ctx, "k", base); err != nil {
		t.Fatalf("Usage of a new quota: %v", err)
	} else {
		wantUsage(t, "a new quota", u, 3, 0, base, cycle)
	}
	if _, _, err := h.Store.Reserve(ctx, "k", 2, base); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		at        time.Time
		wantUsed  int64
		wantStart time.Time
	}{
		{"within the cycle", base.Add(cycle - time.Second), 2, base},
		{"a due cycle reads as fresh", base.Add(cycle), 0, base.Add(cycle)},
		{"long after", base.Add(10 * cycle), 0, base.Add(10 * cycle)},
	}
	for _, c := range cases {
		u, err := h.Store.Usage(ctx, "k", c.at)
		if err != nil {
			t.Fatalf("%s: Usage: %v", c.name, err)
		}
		wantUsage(t, c.name, u, 3, c.wantUsed, c.wantStart, cycle)
	}
	wantStored(t, h, "k", 2, base) // Usage wrote nothing
}

// testPutReplaces: Put on an existing quota sets a new limit and cycle with nothing
// used, and a give-back for the replaced cycle changes nothing.
func testPutReplaces(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 2, base)
	put(t, h, "other", 2, base)
	_, old, err := h.Store.Reserve(ctx, "k", 2, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consume(t, h.Store, "k", base.Add(time.Hour)); !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("Consume on a spent quota: err = %v, want ErrExceeded", err)
	}

	// A higher limit in a new cycle.
	next := base.Add(2 * time.Hour)
	put(t, h, "k", 5, next)
	wantStored(t, h, "k", 0, next)
	if u, err := h.Store.Usage(ctx, "k", next); err != nil {
		t.Fatal(err)
	} else {
		wantUsage(t, "after Put", u, 5, 0, next, quota.DefaultCycle)
	}
	u, err := consume(t, h.Store, "k", next.Add(time.Minute))
	if err != nil {
		t.Fatalf("Consume after Put raised the limit: %v", err)
	}
	wantUsage(t, "first call after Put", u, 5, 1, next, quota.DefaultCycle)
	if err := h.Store.Release(ctx, "k", 2, old.CycleStart); err != nil {
		t.Fatalf("Release for the replaced cycle: %v", err)
	}
	wantStored(t, h, "k", 1, next)

	// The same cycle start again still clears what was used; a limit of 0 refuses.
	put(t, h, "k", 0, next)
	wantStored(t, h, "k", 0, next)
	if _, err := consume(t, h.Store, "k", next.Add(time.Hour)); !errors.Is(err, quota.ErrExceeded) {
		t.Errorf("Consume after Put set a limit of 0: err = %v, want ErrExceeded", err)
	}
	// Other quotas are untouched.
	wantStored(t, h, "other", 0, base)
	if u, err := h.Store.Usage(ctx, "other", base); err != nil || u.Limit != 2 {
		t.Errorf("the other quota after Put on k: usage %+v, err %v; want limit 2", u, err)
	}
}

// testPutInvalid: a negative limit is an error and changes nothing.
func testPutInvalid(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", 3, base)
	if _, _, err := h.Store.Reserve(ctx, "k", 1, base); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{-1, -1 << 40} {
		if err := h.Store.Put(ctx, "k", limit, base.Add(time.Hour)); err == nil {
			t.Errorf("Put(limit=%d): nil error, want one", limit)
		}
	}
	wantStored(t, h, "k", 1, base)
	if u, err := h.Store.Usage(ctx, "k", base); err != nil || u.Limit != 3 {
		t.Errorf("after refused Puts: usage %+v, err %v; want limit 3", u, err)
	}
	if err := h.Store.Put(ctx, "new", -1, base); err == nil {
		t.Error("Put(new, limit=-1): nil error, want one")
	}
	if _, err := h.Store.Usage(ctx, "new", base); !errors.Is(err, quota.ErrNotFound) {
		t.Errorf("a refused Put created the quota: Usage err = %v, want ErrNotFound", err)
	}
}

// testConcurrentPut: racing Puts of one new quota all succeed and leave one of the
// quotas they set, with nothing used.
func testConcurrentPut(t *testing.T, newHarness factory) {
	const racers = 50
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := newHarness(t, 0)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		fails atomic.Int64
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			if err := h.Store.Put(ctx, "k", int64(i+1), base); err != nil {
				t.Errorf("Put(limit %d): %v", i+1, err)
				fails.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if fails.Load() > 0 {
		t.FailNow()
	}
	wantStored(t, h, "k", 0, base)
	u, err := h.Store.Usage(ctx, "k", base)
	if err != nil || u.Limit < 1 || u.Limit > racers {
		t.Errorf("after racing Puts: usage %+v, err %v; want one of the limits 1..%d", u, err, racers)
	}
}

// testLargeLimit: limits and reservations are int64 end to end, past the 2³¹ of a
// 32-bit column.
func testLargeLimit(t *testing.T, newHarness factory) {
	const limit = 3_000_000_000
	ctx := context.Background()
	h := newHarness(t, 0)
	put(t, h, "k", limit, base)
	now := base.Add(day)
	steps := []struct{ n, wantGranted, wantUsed int64 }{
		{2_500_000_000, 2_500_000_000, 2_500_000_000},
		{1 << 40, 500_000_000, limit},
		{1 << 62, 0, limit},
	}
	for _, st := range steps {
		g, u, err := h.Store.Reserve(ctx, "k", st.n, now)
		if err != nil {
			t.Fatalf("Reserve(%d): %v", st.n, err)
		}
		if g != st.wantGranted {
			t.Errorf("Reserve(%d) granted %d, want %d", st.n, g, st.wantGranted)
		}
		wantUsage(t, fmt.Sprintf("Reserve(%d)", st.n), u, limit, st.wantUsed, base, quota.DefaultCycle)
	}
	if err := h.Store.Release(ctx, "k", 2_000_000_001, base); err != nil {
		t.Fatal(err)
	}
	wantStored(t, h, "k", 999_999_999, base)
	// A due cycle grants a huge n up to the limit at once.
	end := base.Add(quota.DefaultCycle)
	if g, u, err := h.Store.Reserve(ctx, "k", 1<<62, end); err != nil || g != limit {
		t.Errorf("Reserve(2^62) at the boundary: granted %d, err %v; want %d", g, err, limit)
	} else {
		wantUsage(t, "at the boundary", u, limit, limit, end, quota.DefaultCycle)
	}
}

// testCanceledContext: a canceled context fails every method with an error that is
// none of the quota sentinels, and nothing is counted.
func testCanceledContext(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	put(t, h, "k", 5, base)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	isSentinel := func(err error) bool {
		return errors.Is(err, quota.ErrNotFound) || errors.Is(err, quota.ErrExceeded)
	}
	if g, _, err := h.Store.Reserve(ctx, "k", 1, base.Add(day)); err == nil || g != 0 || isSentinel(err) {
		t.Errorf("Reserve: granted %d, err %v; want 0 and a context error", g, err)
	}
	if err := h.Store.Release(ctx, "k", 1, base); err == nil || isSentinel(err) {
		t.Errorf("Release: err %v, want a context error", err)
	}
	if _, err := h.Store.Usage(ctx, "k", base); err == nil || isSentinel(err) {
		t.Errorf("Usage: err %v, want a context error", err)
	}
	if err := h.Store.Put(ctx, "k", 9, base.Add(day)); err == nil || isSentinel(err) {
		t.Errorf("Put: err %v, want a context error", err)
	}
	wantStored(t, h, "k", 0, base)
	if u, err := h.Store.Usage(context.Background(), "k", base); err != nil || u.Limit != 5 {
		t.Errorf("after the canceled calls: usage %+v, err %v; want limit 5", u, err)
	}
}

// Bench measures quota.Consume on s, which must be empty: on one hot quota and
// spread over 1,000 quotas, serially and from b.RunParallel's goroutines (run with
// -cpu 1,2,… to vary them). It sets the quotas with s.Put, with limits no run
// exhausts.
func Bench(b *testing.B, s quota.Store) {
	const (
		keys  = 1000
		limit = 1 << 62
	)
	now := base.Add(day)
	ids := make([]string, keys)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		if err := s.Put(context.Background(), ids[i], limit, base); err != nil {
			b.Fatalf("Put(%q): %v", ids[i], err)
		}
	}
	ctx := context.Background()
	var offset atomic.Int64 // spreads parallel goroutines over different quotas
	pickers := []struct {
		name string
		pick func(i int) string
	}{
		{"hot", func(int) string { return ids[0] }},
		{"spread", func(i int) string { return ids[i%keys] }},
	}
	for _, p := range pickers {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := quota.Consume(ctx, s, p.pick(i), now); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(p.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(offset.Add(keys / 7))
				for pb.Next() {
					if _, err := quota.Consume(ctx, s, p.pick(i), now); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
