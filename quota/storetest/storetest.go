// Package storetest is the conformance suite that every quota.Store implementation
// must pass against its real backend.
//
// A store's test calls Run with a function that builds a Harness on a fresh, empty
// backend. The suite injects every instant it reserves at, so 30-day cycles are
// tested without sleeping.
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

// Harness is a Store under test plus the backdoor the suite needs to arrange keys
// and to check what the backend stored, without going through the Store.
type Harness struct {
	// Store is the store under test.
	Store quota.Store
	// Add registers an active key with that ID: limit calls a cycle, the cycle
	// starting at cycleStart, nothing used. IDs are unique within one harness.
	Add func(id string, limit int64, cycleStart time.Time)
	// Revoke marks the key revoked.
	Revoke func(id string)
	// Stored reads the key's calls used and cycle start as the backend holds them.
	Stored func(id string) (used int64, cycleStart time.Time)
}

// Run runs the suite. newHarness returns a harness on a fresh backend whose store
// counts in cycles of length cycle (zero means quota.DefaultCycle); it may be
// called several times, in parallel, once per subtest, and should fail t rather
// than return on error.
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
		{"Revoked", testRevoked},
		{"NotFound", testNotFound},
		{"ReserveN", testReserveN},
		{"InvalidN", testInvalidN},
		{"KeysIndependent", testKeysIndependent},
		{"CustomCycle", testCustomCycle},
		{"Usage", testUsage},
		{"Release", testRelease},
		{"ReleaseAfterRestart", testReleaseAfterRestart},
		{"ReleaseNeverBelowZero", testReleaseNeverBelowZero},
		{"ReleaseRevokedOrUnknown", testReleaseRevokedOrUnknown},
		{"ConcurrentRelease", testConcurrentRelease},
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

// consumers is how many goroutines race on one key in the concurrency cases.
const consumers = 1000

// race runs count reservations of n calls each on keyID at now, all released at
// once, and returns the calls granted in total and the Used of every usage that
// came with a grant. Any error fails t: Reserve reports a refusal as 0 granted.
func race(t *testing.T, s quota.Store, keyID string, count int, n int64, now time.Time) (granted int64, useds []int64) {
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
			g, u, err := s.Reserve(ctx, keyID, n, now)
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
		t.Errorf("Reserve(%q, %d) error: %v", keyID, n, err)
	}
	return granted, useds
}

// wantStored fails t unless the backend holds used calls and a cycle starting at
// start for the key.
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

func testExactness(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	h.Add("k", 100, base)
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
	h.Add("k", 100, base)
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
	h.Add("k", limit, base)
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
	h.Add("k", limit, base)
	if g, _, err := h.Store.Reserve(context.Background(), "k", limit, base.Add(day)); err != nil || g != limit {
		t.Fatalf("exhausting the key: granted %d, err %v; want %d, nil", g, err, limit)
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
	h.Add("k", 2, base)
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

// testDueButRefused: a key with a limit of 0 is refused even when its cycle is due;
// the refusal reports the fresh cycle it would have opened and writes nothing.
func testDueButRefused(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	h.Add("k", 0, base)
	now := base.Add(quota.DefaultCycle + time.Hour)
	u, err := consume(t, h.Store, "k", now)
	if !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("Consume on a limit of 0: err = %v, want ErrExceeded", err)
	}
	wantUsage(t, "due and refused", u, 0, 0, now, quota.DefaultCycle)
	wantStored(t, h, "k", 0, base)
}

func testRevoked(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	h.Add("k", 10, base)
	if _, err := consume(t, h.Store, "k", base.Add(day)); err != nil {
		t.Fatalf("Consume before revoking: %v", err)
	}
	h.Revoke("k")
	for _, at := range []time.Time{base.Add(day), base.Add(quota.DefaultCycle)} {
		g, _, err := h.Store.Reserve(context.Background(), "k", 3, at)
		if !errors.Is(err, quota.ErrRevoked) || g != 0 {
			t.Errorf("Reserve on a revoked key at %v: granted %d, err %v; want 0, ErrRevoked", at, g, err)
		}
	}
	wantStored(t, h, "k", 1, base)
}

func testNotFound(t *testing.T, newHarness factory) {
	h := newHarness(t, 0)
	h.Add("k", 10, base)
	for _, id := range []string{"nope", "", "K", "k ", "' OR 1=1 --"} {
		g, _, err := h.Store.Reserve(context.Background(), id, 1, base.Add(day))
		if !errors.Is(err, quota.ErrNotFound) || g != 0 {
			t.Errorf("Reserve(%q): granted %d, err %v; want 0, ErrNotFound", id, g, err)
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
		h.Add(id, limit, base)
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
	h.Add("k", 10, base)
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
	h.Add("a", 3, base)
	h.Add("b", 3, base.Add(day))
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
	h.Add("k", 2, base)
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

// testRelease: released calls count no more; a key refused at its limit is granted
// again after a release.
func testRelease(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	h.Add("k", 3, base)
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
	h.Add("k", 5, base)
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
	h.Add("k", 5, base)
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

// testReleaseRevokedOrUnknown: a revoked key gives nothing back and is no error;
// an unknown one is ErrNotFound.
func testReleaseRevokedOrUnknown(t *testing.T, newHarness factory) {
	ctx := context.Background()
	h := newHarness(t, 0)
	h.Add("k", 5, base)
	if _, err := consume(t, h.Store, "k", base.Add(day)); err != nil {
		t.Fatal(err)
	}
	h.Revoke("k")
	if err := h.Store.Release(ctx, "k", 1, base); err != nil {
		t.Errorf("Release on a revoked key: %v, want nil", err)
	}
	wantStored(t, h, "k", 1, base)
	for _, id := range []string{"nope", "", "K", "' OR 1=1 --"} {
		if err := h.Store.Release(ctx, id, 1, base); !errors.Is(err, quota.ErrNotFound) {
			t.Errorf("Release(%q): err = %v, want ErrNotFound", id, err)
		}
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
	h.Add("k", limit, base)
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

// UsageReader is implemented by stores that can report a key's usage without
// counting anything (memstore and sqlstore do); the suite checks it when the
// harness's Store has it.
type UsageReader interface {
	Usage(ctx context.Context, keyID string, now time.Time) (quota.Usage, error)
}

func testUsage(t *testing.T, newHarness factory) {
	const cycle = time.Hour
	h := newHarness(t, cycle)
	r, ok := h.Store.(UsageReader)
	if !ok {
		t.Skipf("%T has no Usage method", h.Store)
	}
	ctx := context.Background()
	h.Add("k", 3, base)
	h.Add("r", 3, base)
	h.Revoke("r")
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
	}
	for _, c := range cases {
		u, err := r.Usage(ctx, "k", c.at)
		if err != nil {
			t.Fatalf("%s: Usage: %v", c.name, err)
		}
		wantUsage(t, c.name, u, 3, c.wantUsed, c.wantStart, cycle)
	}
	wantStored(t, h, "k", 2, base) // Usage wrote nothing
	if _, err := r.Usage(ctx, "r", base); !errors.Is(err, quota.ErrRevoked) {
		t.Errorf("Usage on a revoked key: err = %v, want ErrRevoked", err)
	}
	if _, err := r.Usage(ctx, "x", base); !errors.Is(err, quota.ErrNotFound) {
		t.Errorf("Usage on an unknown key: err = %v, want ErrNotFound", err)
	}
}

// Bench measures quota.Consume on s, which must be empty: on one hot key and spread
// over 1,000 keys, serially and from b.RunParallel's goroutines (run with -cpu
// 1,2,… to vary them). add registers a key as Harness.Add does.
func Bench(b *testing.B, s quota.Store, add func(id string, limit int64, cycleStart time.Time)) {
	const (
		keys = 1000
		// limit is the largest an INTEGER column holds on PostgreSQL, so no run
		// ever exhausts a key.
		limit = 1<<31 - 1
	)
	now := base.Add(day)
	ids := make([]string, keys)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		add(ids[i], limit, base)
	}
	ctx := context.Background()
	var offset atomic.Int64 // spreads parallel goroutines over different keys
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
