package quota_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/quota/sqlstore"
)

// lbase is the cycle start of the lease tests: whole microseconds, which every
// backend stores exactly.
var lbase = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// replicas opens a fresh backend counting in cycles of length cycle and returns a
// function that makes a Store on it each time it is called: one per "replica",
// sharing the quotas (on SQL, each on a pool of its own).
type replicasFunc = func(t testing.TB, cycle time.Duration) func() quota.Store

var leaseBackends = []struct {
	name string
	open replicasFunc
}{
	{"memstore", func(_ testing.TB, cycle time.Duration) func() quota.Store {
		s := memstore.New(memstore.Config{Cycle: cycle})
		return func() quota.Store { return s }
	}},
	{"sqlite", func(t testing.TB, cycle time.Duration) func() quota.Store {
		path := testenv.SQLitePath(t)
		return func() quota.Store { return sqlQuotas(t, testenv.OpenSQLite(t, path), cycle) }
	}},
	{"postgres", func(t testing.TB, cycle time.Duration) func() quota.Store {
		url := testenv.PostgresURL(t)
		return func() quota.Store { return sqlQuotas(t, testenv.OpenPostgres(t, url), cycle) }
	}},
}

// sqlQuotas is a quota/sqlstore on a quotas table of its own, whose rows Put
// creates.
func sqlQuotas(t testing.TB, db *sqlx.DB, cycle time.Duration) quota.Store {
	t.Helper()
	s := sqlstore.New(db, sqlstore.Config{Cycle: cycle, Table: "quotas"})
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return s
}

// eachBackend runs f as a parallel subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, open replicasFunc)) {
	t.Helper()
	for _, b := range leaseBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.open)
		})
	}
}

func mustPut(t testing.TB, s quota.Store, id string, limit int64, start time.Time) {
	t.Helper()
	if err := s.Put(context.Background(), id, limit, start); err != nil {
		t.Fatalf("Put(%q, %d): %v", id, limit, err)
	}
}

func mustUsage(t testing.TB, s quota.Store, id string, now time.Time) quota.Usage {
	t.Helper()
	u, err := s.Usage(context.Background(), id, now)
	if err != nil {
		t.Fatalf("Usage(%q): %v", id, err)
	}
	return u
}

func mustTake(t testing.TB, l *quota.Leases, id string, now time.Time) quota.Usage {
	t.Helper()
	u, err := l.Take(context.Background(), id, now)
	if err != nil {
		t.Fatalf("Take(%q, %v): %v", id, now, err)
	}
	return u
}

func mustClose(t testing.TB, ls ...*quota.Leases) {
	t.Helper()
	for _, l := range ls {
		if err := l.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// errDown is what a spy answers while it is down.
var errDown = errors.New("store down")

// spy wraps a Store: it counts calls, records the n of every Reserve, and fails
// every call while down is set.
type spy struct {
	quota.Store
	down                       atomic.Bool
	reserves, releases, usages atomic.Int64

	mu    sync.Mutex
	asked []int64
}

func (s *spy) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	s.reserves.Add(1)
	if s.down.Load() {
		return 0, quota.Usage{}, errDown
	}
	s.mu.Lock()
	s.asked = append(s.asked, n)
	s.mu.Unlock()
	return s.Store.Reserve(ctx, id, n, now)
}

func (s *spy) Release(ctx context.Context, id string, n int64, start time.Time) error {
	s.releases.Add(1)
	if s.down.Load() {
		return errDown
	}
	return s.Store.Release(ctx, id, n, start)
}

func (s *spy) Usage(ctx context.Context, id string, now time.Time) (quota.Usage, error) {
	s.usages.Add(1)
	if s.down.Load() {
		return quota.Usage{}, errDown
	}
	return s.Store.Usage(ctx, id, now)
}

// askedSince returns the batch sizes asked for from the i-th Reserve on.
func (s *spy) askedSince(i int) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.asked[i:]...)
}

func newSpy(cycle time.Duration) *spy {
	return &spy{Store: memstore.New(memstore.Config{Cycle: cycle})}
}

// waitUntil polls cond (yielding the processor) until it holds, failing t after
// a generous deadline: it orders goroutines, it does not time anything.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		runtime.Gosched()
	}
}

// outcome counts the answers of racing Takes.
type outcome struct {
	mu       sync.Mutex
	served   int
	exceeded int
	errs     []error
	usages   []quota.Usage
	nows     []time.Time
}

func (o *outcome) add(u quota.Usage, err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.served++
		o.usages = append(o.usages, u)
		o.nows = append(o.nows, now)
	case errors.Is(err, quota.ErrExceeded):
		o.exceeded++
	default:
		o.errs = append(o.errs, err)
	}
}

func (o *outcome) check(t *testing.T) {
	t.Helper()
	for i, err := range o.errs {
		if i == 3 {
			t.Errorf("… and %d more errors", len(o.errs)-3)
			break
		}
		t.Errorf("Take: %v", err)
	}
}

// race runs count Takes of quota id at once, Take i on ls[i%len(ls)] at nows[i%len(nows)].
func race(t *testing.T, ls []*quota.Leases, id string, count int, nows ...time.Time) *outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		o     outcome
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range count {
		l, now := ls[i%len(ls)], nows[i%len(nows)]
		wg.Go(func() {
			<-start
			u, err := l.Take(ctx, id, now)
			o.add(u, err, now)
		})
	}
	close(start)
	wg.Wait()
	o.check(t)
	return &o
}

// TestLeasesExactness: 1,000 racing Takes on a limit of 100 through two Leases on
// one store (two replicas) serve exactly 100, and the store counts exactly 100.
func TestLeasesExactness(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		newStore := open(t, 0)
		a, b := newStore(), newStore()
		mustPut(t, a, "k", 100, lbase)
		ls := []*quota.Leases{quota.NewLeases(a, quota.LeaseConfig{}), quota.NewLeases(b, quota.LeaseConfig{})}
		now := lbase.Add(time.Hour)
		o := race(t, ls, "k", 1000, now)
		if o.served != 100 || o.exceeded != 900 {
			t.Fatalf("served %d, refused %d; want 100 and 900", o.served, o.exceeded)
		}
		for _, u := range o.usages {
			if u.Limit != 100 || u.Remaining() > 99 || u.Remaining() < 0 {
				t.Fatalf("served with usage %+v", u)
			}
		}
		mustClose(t, ls...)
		if u := mustUsage(t, a, "k", now); u.Used != 100 {
			t.Errorf("store used %d after Close, want 100", u.Used)
		}
	})
}

// TestLeasesExactnessBatched: with batches allowed up to the whole limit, racing
// replicas never serve more than the limit; what they hold unspent goes back on
// Close, and the rest of the limit is then served to the last call.
func TestLeasesExactnessBatched(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		newStore := open(t, 0)
		a, b := newStore(), newStore()
		mustPut(t, a, "k", 100, lbase)
		cfg := quota.LeaseConfig{LimitFraction: 1}
		ls := []*quota.Leases{quota.NewLeases(a, cfg), quota.NewLeases(b, cfg)}
		now := lbase.Add(time.Hour)
		o := race(t, ls, "k", 1000, now)
		if o.served > 100 || o.served+o.exceeded != 1000 {
			t.Fatalf("served %d, refused %d", o.served, o.exceeded)
		}
		mustClose(t, ls...)
		if u := mustUsage(t, a, "k", now); u.Used != int64(o.served) {
			t.Fatalf("store used %d after Close, served %d", u.Used, o.served)
		}
		rest := race(t, ls, "k", 200, now.Add(time.Second))
		if o.served+rest.served != 100 {
			t.Errorf("served %d, then %d more: want 100 in all", o.served, rest.served)
		}
	})
}

// TestLeasesLastCall: two replicas taking in turn serve the limit to the last
// call between them, and neither reports more remaining than the limit minus what
// it served itself. One may be refused while the other still holds its last
// batch (its idea of what is left is as old as its last reservation), at most
// ceil(limit × LimitFraction) calls, which the other serves next.
func TestLeasesLastCall(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		const limit = 1000
		for _, c := range []struct {
			fraction float64
			held     int64 // what the other may hold at the first refusal
		}{
			{0, limit / 100},
			{0.1, limit / 10},
			{1, limit / 2},
		} {
			newStore := open(t, 0)
			a, b := newStore(), newStore()
			mustPut(t, a, "k", limit, lbase)
			cfg := quota.LeaseConfig{LimitFraction: c.fraction}
			ls := []*quota.Leases{quota.NewLeases(a, cfg), quota.NewLeases(b, cfg)}
			served := make([]int64, 2)
			firstRefusal := int64(-1)
			now := lbase.Add(time.Hour)
			for i, refusedInARow := 0, 0; refusedInARow < 2; i++ {
				now = now.Add(time.Millisecond)
				u, err := ls[i%2].Take(context.Background(), "k", now)
				switch {
				case errors.Is(err, quota.ErrExceeded):
					refusedInARow++
					if firstRefusal < 0 {
						firstRefusal = served[0] + served[1]
					}
					continue
				case err != nil:
					t.Fatal(err)
				}
				refusedInARow = 0
				served[i%2]++
				if u.Remaining() > limit-served[i%2] {
					t.Fatalf("fraction %v: replica %d after %d served: remaining %d", c.fraction, i%2, served[i%2], u.Remaining())
				}
			}
			if total := served[0] + served[1]; total != limit {
				t.Errorf("fraction %v: served %v = %d, want %d", c.fraction, served, total, limit)
			}
			if firstRefusal < limit-c.held {
				t.Errorf("fraction %v: first refusal after %d served, want at least %d", c.fraction, firstRefusal, limit-c.held)
			}
			t.Logf("fraction %v: first refusal after %d of %d", c.fraction, firstRefusal, limit)
			if u := mustUsage(t, a, "k", now); u.Used != limit {
				t.Errorf("fraction %v: store used %d", c.fraction, u.Used)
			}
		}
	})
}

// TestLeasesBatchSizes: leases start at one call, grow (at most doubling) while
// they are spent faster than Window, settle on Window of traffic, and shrink (at
// most halving) when they last longer. A lease's size is its calls right after a
// reservation: the batch plus the quarter left when the batch was reserved ahead.
func TestLeasesBatchSizes(t *testing.T) {
	t.Parallel()
	type step struct {
		every time.Duration
		calls int
	}
	cases := []struct {
		name  string
		cfg   quota.LeaseConfig
		limit int64
		steps []step
		want  []int64
	}{
		{"doubles up to MaxBatch", quota.LeaseConfig{MaxBatch: 64}, 1_000_000,
			[]step{{time.Millisecond, 200}},
			[]int64{1, 2, 4, 8, 16, 32, 64, 64}},
		{"settles on Window of traffic", quota.LeaseConfig{}, 1_000_000,
			[]step{{100 * time.Millisecond, 100}}, // 10 calls/s, Window 2 s: 20
			[]int64{1, 2, 4, 8, 16, 20, 20, 20, 20}},
		{"a shorter Window", quota.LeaseConfig{Window: 500 * time.Millisecond}, 1_000_000,
			[]step{{10 * time.Millisecond, 200}}, // 100 calls/s: 50
			[]int64{1, 2, 4, 8, 16, 32, 50, 50}},
		{"halves when leases last", quota.LeaseConfig{MaxBatch: 64}, 1_000_000,
			[]step{{time.Millisecond, 64}, {10 * time.Second, 200}},
			[]int64{1, 2, 4, 8, 16, 32, 64, 32, 16, 8, 4, 2, 1, 1}},
		{"one percent of the limit", quota.LeaseConfig{}, 10_000,
			[]step{{time.Millisecond, 400}},
			[]int64{1, 2, 4, 8, 16, 32, 64, 100, 100, 100}},
		{"the default MaxBatch", quota.LeaseConfig{}, 10_000_000,
			[]step{{time.Microsecond, 3000}},
			[]int64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newSpy(0)
			mustPut(t, s, "k", c.limit, lbase)
			l := quota.NewLeases(s, c.cfg)
			now := lbase.Add(time.Hour)
			var sizes []int64
			for _, st := range c.steps {
				for range st.calls {
					r := s.reserves.Load()
					mustTake(t, l, "k", now)
					if s.reserves.Load() != r {
						sizes = append(sizes, l.LeaseSize("k"))
					}
					now = now.Add(st.every)
				}
			}
			if len(sizes) > len(c.want) {
				sizes = sizes[:len(c.want)]
			}
			if fmt.Sprint(sizes) != fmt.Sprint(c.want) {
				t.Errorf("lease sizes %v\n         want %v", sizes, c.want)
			}
			if st := l.Stats(); st.Unspent > min(c.cfg.MaxBatch, c.limit/100, 1000) && c.cfg.MaxBatch > 0 {
				t.Errorf("holding %d calls", st.Unspent)
			}
		})
	}
}

// TestLeasesNearLimit: near the limit a batch is at most half of what is left, so
// the last calls are reserved one at a time, and the limit is served exactly.
func TestLeasesNearLimit(t *testing.T) {
	t.Parallel()
	const limit = 100
	s := newSpy(0)
	mustPut(t, s, "k", limit, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1})
	now := lbase.Add(time.Hour)
	for i := range limit {
		u := mustTake(t, l, "k", now)
		if u.Remaining() != int64(limit-1-i) {
			t.Fatalf("call %d: remaining %d, want %d", i+1, u.Remaining(), limit-1-i)
		}
	}
	if _, err := l.Take(context.Background(), "k", now); !errors.Is(err, quota.ErrExceeded) {
		t.Fatalf("call %d: %v, want ErrExceeded", limit+1, err)
	}
	asked := s.askedSince(0)
	left := int64(limit)
	for i, n := range asked[:len(asked)-1] { // the last one was refused
		if i > 0 && n > max(left/2, 1) {
			t.Errorf("batch %d asked %d with %d left", i+1, n, left)
		}
		left -= min(n, left)
	}
	if tail := asked[len(asked)-4:]; fmt.Sprint(tail) != "[1 1 1 1]" {
		t.Errorf("batches %v: want the last ones of 1 call", asked)
	}
}

// TestLeasesCycleBoundary: a Take at the lease's cycle end discards its leftover
// and reserves in the new cycle, which the store opens; the old cycle's leftover
// is not given to the new one, and a refund for the old cycle is dropped.
func TestLeasesCycleBoundary(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		const cycle = time.Hour
		s := open(t, cycle)()
		mustPut(t, s, "k", 10, lbase)
		l := quota.NewLeases(s, quota.LeaseConfig{Cycle: cycle, LimitFraction: 1})
		var old quota.Usage
		for range 4 { // batches of 1, 2 and 3 (half of the 7 left): 2 calls left
			old = mustTake(t, l, "k", lbase.Add(time.Minute))
		}
		if st := l.Stats(); st.Unspent != 2 || old.Remaining() != 6 {
			t.Fatalf("before the end: %+v, remaining %d", st, old.Remaining())
		}
		end := lbase.Add(cycle)
		if _, err := l.Take(context.Background(), "k", end.Add(-time.Microsecond)); err != nil {
			t.Fatal(err)
		}
		u := mustTake(t, l, "k", end)
		if !u.CycleStart.Equal(end) || u.Used != 1 || u.Remaining() != 9 || !u.Reset.Equal(end.Add(cycle)) {
			t.Fatalf("first call of the new cycle: %+v", u)
		}
		if st := l.Stats(); st.Voided != 1 {
			t.Errorf("voided %d calls, want the 1 left of the old cycle", st.Voided)
		}
		l.Refund("k", old) // the old cycle's call: dropped
		if st := l.Stats(); st.Owed != 0 {
			t.Errorf("a refund for the ended cycle is owed: %+v", st)
		}
		if u := mustTake(t, l, "k", end.Add(time.Second)); u.Used != 2 {
			t.Errorf("second call of the new cycle: used %d", u.Used)
		}
		mustClose(t, l)
		if u := mustUsage(t, s, "k", end.Add(time.Second)); u.Used != 2 || !u.CycleStart.Equal(end) {
			t.Errorf("store after Close: %+v, want 2 used in the cycle from %v", u, end)
		}
	})
}

// TestLeasesCycleBoundaryRace: Takes racing across the cycle end on two replicas
// holding leases of the old cycle: none at or after the end spends the old cycle,
// neither cycle serves more than the limit, and the new cycle's count is exact.
func TestLeasesCycleBoundaryRace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		const (
			cycle = time.Hour
			limit = 50
		)
		newStore := open(t, cycle)
		a, b := newStore(), newStore()
		mustPut(t, a, "k", limit, lbase)
		cfg := quota.LeaseConfig{Cycle: cycle, LimitFraction: 1}
		ls := []*quota.Leases{quota.NewLeases(a, cfg), quota.NewLeases(b, cfg)}
		for _, l := range ls {
			for range 6 {
				mustTake(t, l, "k", lbase.Add(time.Minute))
			}
		}
		end := lbase.Add(cycle)
		before := end.Add(-time.Microsecond)
		o := race(t, ls, "k", 400, before, before, end, end.Add(time.Microsecond))
		// The new cycle starts at the instant of the first reservation at or after
		// the end: end or end+1µs, whichever Take reached the store first.
		var (
			oldServed, newServed int
			newStart             time.Time
		)
		for i, u := range o.usages {
			switch {
			case u.CycleStart.Equal(lbase):
				oldServed++
				if !o.nows[i].Before(end) {
					t.Errorf("a Take at %v spent the old cycle", o.nows[i])
				}
			case !u.CycleStart.Before(end) && !u.CycleStart.After(end.Add(time.Microsecond)):
				if newServed > 0 && !u.CycleStart.Equal(newStart) {
					t.Errorf("two new cycles: from %v and from %v", newStart, u.CycleStart)
				}
				newServed++
				newStart = u.CycleStart
			default:
				t.Errorf("served in a cycle from %v", u.CycleStart)
			}
		}
		if oldServed+12 > limit || newServed != limit {
			t.Errorf("served %d more in the old cycle, %d in the new; limit %d", oldServed, newServed, limit)
		}
		mustClose(t, ls...)
		u := mustUsage(t, a, "k", end.Add(time.Second))
		if !u.CycleStart.Equal(newStart) || u.Used != int64(newServed) {
			t.Errorf("store after Close: %+v; want %d used in the cycle from %v", u, newServed, newStart)
		}
	})
}

// TestLeasesRefundDuringOutage: Refund does no I/O, so a store that fails every
// call still takes refunds, and the refunded call is served next from the lease.
// Expire keeps what it fails to give back, still spendable, and gives it back once
// the store is up.
func TestLeasesRefundDuringOutage(t *testing.T) {
	t.Parallel()
	s := newSpy(0)
	mustPut(t, s, "k", 100, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1})
	now := lbase.Add(time.Hour)
	var u quota.Usage
	for range 4 { // leases of 1, 2 and 4 calls: 3 left
		u = mustTake(t, l, "k", now)
	}
	if st := l.Stats(); st.Unspent != 3 {
		t.Fatalf("before the outage: %+v", st)
	}
	s.down.Store(true)
	calls := func() int64 { return s.reserves.Load() + s.releases.Load() + s.usages.Load() }
	before := calls()
	l.Refund("k", u)
	l.Refund("k", u)
	if calls() != before {
		t.Fatal("Refund called the store")
	}
	if got := mustTake(t, l, "k", now); got.Used != u.Used-1 {
		t.Errorf("after two refunds: used %d, want %d", got.Used, u.Used-1)
	}
	// The other refund and the 3 left: served from the lease though the store is
	// down. (The lease running low tries one reservation ahead, which fails.)
	for range 4 {
		mustTake(t, l, "k", now)
	}
	if n := calls() - before; n > 1 {
		t.Fatalf("leased Takes called the store %d times", n)
	}
	_, err := l.Take(context.Background(), "k", now)
	if !errors.Is(err, errDown) || errors.Is(err, quota.ErrExceeded) || !strings.HasPrefix(err.Error(), "quota: lease: ") {
		t.Fatalf("Take with the store down and the lease spent: %v", err)
	}
	l.Refund("k", u)
	idle := now.Add(time.Minute)
	if err := l.Expire(context.Background(), idle); !errors.Is(err, errDown) {
		t.Fatalf("Expire with the store down: %v", err)
	}
	if st := l.Stats(); st.Unspent != 1 || st.Leases != 1 {
		t.Fatalf("after a failed Expire: %+v, want the refunded call kept", st)
	}
	if got := mustTake(t, l, "k", idle); got.Used != 7 {
		t.Errorf("the kept call: used %d, want 7", got.Used)
	}
	l.Refund("k", u)
	s.down.Store(false)
	if err := l.Expire(context.Background(), idle.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Served 4 + 1 + 4 + 1 calls, 4 of them refunded: 6.
	if got, st := mustUsage(t, s, "k", idle), l.Stats(); got.Used != 6 || st.Unspent != 0 || st.Leases != 0 || st.Owed != 0 {
		t.Errorf("store used %d (want 6), stats %+v", got.Used, st)
	}
}

// TestLeasesGiveBack: Drop, Expire and Close give leftovers back, so the store's
// count equals the calls served, net of refunds.
func TestLeasesGiveBack(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		s := open(t, 0)()
		ids := []string{"dropped", "idle", "busy", "other"}
		for _, id := range ids {
			mustPut(t, s, id, 10_000, lbase)
		}
		l := quota.NewLeases(s, quota.LeaseConfig{})
		ctx := context.Background()
		served := map[string]int64{}
		now := lbase.Add(time.Hour)
		for i := range 2000 {
			id := ids[i%len(ids)]
			u := mustTake(t, l, id, now)
			served[id]++
			if i%7 == 0 {
				l.Refund(id, u)
				served[id]--
			}
			now = now.Add(time.Millisecond)
		}
		used := func(id string) int64 { return mustUsage(t, s, id, now).Used }
		if st := l.Stats(); st.Unspent == 0 {
			t.Fatalf("after the traffic: %+v: nothing to give back", st)
		}

		if err := l.Drop(ctx, "dropped"); err != nil {
			t.Fatal(err)
		}
		if used("dropped") != served["dropped"] {
			t.Errorf("dropped: store used %d, served %d", used("dropped"), served["dropped"])
		}
		u := mustTake(t, l, "dropped", now) // reserves anew, a batch of one
		served["dropped"]++
		if used("dropped") != served["dropped"] || u.Used != served["dropped"] {
			t.Errorf("after Drop: store used %d, usage %+v, served %d", used("dropped"), u, served["dropped"])
		}

		// busy keeps being used; idle is not touched for IdleTimeout.
		for range 10 {
			now = now.Add(500 * time.Millisecond)
			mustTake(t, l, "busy", now)
			served["busy"]++
			if err := l.Expire(ctx, now); err != nil {
				t.Fatal(err)
			}
		}
		if used("idle") != served["idle"] {
			t.Errorf("idle: store used %d, served %d", used("idle"), served["idle"])
		}
		if st := l.Stats(); st.Leases > 1 { // at most busy's: the idle ones were given back
			t.Errorf("after Expire: %+v", st)
		}
		mustClose(t, l)
		for _, id := range ids {
			if used(id) != served[id] {
				t.Errorf("%s after Close: store used %d, served %d", id, used(id), served[id])
			}
		}
		if st := l.Stats(); st.Leases != 0 || st.Unspent != 0 || st.Owed != 0 {
			t.Errorf("stats after Close: %+v", st)
		}
	})
}

// TestLeasesKill: a process that dies holding leases (no Close) loses at most one
// batch per quota: at most 1% of the limit, and about Window of the quota's
// traffic. A new process then serves exactly what the store has left, never more.
func TestLeasesKill(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		const limit = 10_000
		newStore := open(t, 0)
		s := newStore()
		keys := []struct {
			id    string
			every time.Duration
			calls int
			bound int64 // calls the crash may lose
		}{
			{"hot", time.Millisecond, 3000, limit / 100}, // 1,000 calls/s: capped at 1%
			{"slow", 100 * time.Millisecond, 300, 20},    // 10 calls/s × 2 s
		}
		l := quota.NewLeases(s, quota.LeaseConfig{})
		for i := range keys {
			k := &keys[i]
			mustPut(t, s, k.id, limit, lbase)
			now := lbase.Add(time.Hour)
			for range k.calls {
				mustTake(t, l, k.id, now)
				now = now.Add(k.every)
			}
			// The worst moment to die: right after a reservation.
			for r := l.Stats().Reservations; l.Stats().Reservations == r; k.calls++ {
				mustTake(t, l, k.id, now)
				now = now.Add(k.every)
			}
		}
		l = nil // killed: no Close
		after := quota.NewLeases(newStore(), quota.LeaseConfig{})
		now := lbase.Add(2 * time.Hour)
		for _, k := range keys {
			lost := mustUsage(t, s, k.id, now).Used - int64(k.calls)
			if lost < 0 || lost > k.bound {
				t.Errorf("%s: the crash lost %d calls, bound %d", k.id, lost, k.bound)
			}
			t.Logf("%s: the crash lost %d calls (bound %d)", k.id, lost, k.bound)
			var more int64
			for ; ; more++ {
				_, err := after.Take(context.Background(), k.id, now)
				if errors.Is(err, quota.ErrExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				now = now.Add(time.Millisecond)
			}
			if total := int64(k.calls) + more; total != limit-lost {
				t.Errorf("%s: served %d before and %d after the crash: want %d", k.id, k.calls, more, limit-lost)
			}
		}
	})
}

// TestLeasesRemaining: in one process Remaining is exact; across two, a replica's
// Remaining is never above the limit minus what it served, and after Expire's
// refresh never above the limit minus what both served.
func TestLeasesRemaining(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		const limit = 1000
		newStore := open(t, 0)
		sa, sb := newStore(), newStore()
		mustPut(t, sa, "k", limit, lbase)
		cfg := quota.LeaseConfig{IdleTimeout: time.Hour}
		a, b := quota.NewLeases(sa, cfg), quota.NewLeases(sb, cfg)
		now := lbase.Add(time.Hour)
		var servedA, servedB int64
		for i := range 300 {
			u := mustTake(t, a, "k", now)
			servedA++
			if i%10 == 3 {
				a.Refund("k", u)
				servedA--
				if u2 := mustTake(t, a, "k", now); u2.Remaining() != u.Remaining() {
					t.Fatalf("the refunded call served: remaining %d, want %d", u2.Remaining(), u.Remaining())
				}
				servedA++
			}
			if u.Remaining() != limit-servedA {
				t.Fatalf("one process, %d served: remaining %d", servedA, u.Remaining())
			}
			now = now.Add(time.Millisecond)
		}
		for range 200 {
			u := mustTake(t, b, "k", now)
			servedB++
			if u.Remaining() > limit-servedB {
				t.Fatalf("b: remaining %d after %d", u.Remaining(), servedB)
			}
			now = now.Add(time.Millisecond)
		}
		u := mustTake(t, a, "k", now)
		servedA++
		if u.Remaining() > limit-servedA || u.Remaining() <= limit-servedA-servedB {
			t.Fatalf("a before its refresh: remaining %d (served %d, b %d)", u.Remaining(), servedA, servedB)
		}
		now = now.Add(time.Second)
		if err := a.Expire(context.Background(), now); err != nil {
			t.Fatal(err)
		}
		u = mustTake(t, a, "k", now)
		servedA++
		if u.Remaining() > limit-servedA-servedB {
			t.Errorf("a after its refresh: remaining %d; served %d + %d", u.Remaining(), servedA, servedB)
		}
		mustClose(t, a, b)
		if got := mustUsage(t, sa, "k", now).Used; got != servedA+servedB {
			t.Errorf("store used %d, served %d", got, servedA+servedB)
		}
	})
}

// TestLeasesRefresh: Expire re-reads a quota whose lease is in use at most once a
// second, only when it was spent from since, and a re-read that finds the quota
// replaced by a Put discards the lease.
func TestLeasesRefresh(t *testing.T) {
	t.Parallel()
	s := newSpy(0)
	mustPut(t, s, "k", 100_000, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{IdleTimeout: time.Hour})
	ctx := context.Background()
	now := lbase.Add(time.Hour)
	for range 500 {
		mustTake(t, l, "k", now)
		now = now.Add(time.Millisecond)
	}
	reads := func() int64 { return s.usages.Load() }
	expire := func(at time.Time) {
		t.Helper()
		if err := l.Expire(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
	reserved := s.reserves.Load()
	last := now // the last reservation was at most this recent
	expire(last.Add(time.Second))
	if reads() != 1 {
		t.Fatalf("%d reads a second after the last reservation, want 1", reads())
	}
	mustTake(t, l, "k", last.Add(1100*time.Millisecond))
	expire(last.Add(1500 * time.Millisecond))
	if reads() != 1 {
		t.Errorf("%d reads half a second after the last, want 1", reads())
	}
	expire(last.Add(2500 * time.Millisecond))
	if reads() != 2 {
		t.Errorf("%d reads after a second more, want 2", reads())
	}
	expire(last.Add(4 * time.Second))
	if reads() != 2 {
		t.Errorf("%d reads with no Take since the last, want 2", reads())
	}
	if s.reserves.Load() != reserved {
		t.Fatal("the test reserved; give the lease more calls")
	}

	// Another process replaces the quota (a plan change): the refresh voids the lease.
	upgraded := last.Add(5 * time.Second)
	mustPut(t, s, "k", 7, upgraded)
	mustTake(t, l, "k", upgraded) // still the old lease
	expire(upgraded.Add(time.Second))
	if st := l.Stats(); st.Leases != 0 || st.Voided == 0 {
		t.Errorf("after the refresh: %+v", st)
	}
	u := mustTake(t, l, "k", upgraded.Add(time.Second))
	if u.Limit != 7 || !u.CycleStart.Equal(upgraded) || u.Used != 1 {
		t.Errorf("after the plan change: %+v", u)
	}
}

// gated blocks every Reserve of quotas that block selects until the test lets
// it through, and counts the reservations in flight.
type gated struct {
	quota.Store
	block       func(id string) bool
	entered     chan string
	proceed     chan struct{}
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

func newGated(s quota.Store, block func(string) bool) *gated {
	return &gated{Store: s, block: block, entered: make(chan string, 16), proceed: make(chan struct{})}
}

func (g *gated) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	c := g.inflight.Add(1)
	defer g.inflight.Add(-1)
	for m := g.maxInflight.Load(); c > m && !g.maxInflight.CompareAndSwap(m, c); m = g.maxInflight.Load() {
	}
	if g.block(id) {
		g.entered <- id
		select {
		case <-g.proceed:
		case <-ctx.Done():
			return 0, quota.Usage{}, ctx.Err()
		}
	}
	return g.Store.Reserve(ctx, id, n, now)
}

// TestLeasesNoStampede: while one Take reserves, the others on the same quota wait
// for it and spend what it brings: one reservation at a time, and a handful for a
// hundred Takes. A refusal is shared by every Take that waited for it.
func TestLeasesNoStampede(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{1_000_000, 1} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			t.Parallel()
			mem := &spy{Store: memstore.New(memstore.Config{})}
			mustPut(t, mem, "k", limit, lbase)
			g := newGated(mem, func(string) bool { return true })
			l := quota.NewLeases(g, quota.LeaseConfig{})
			now := lbase.Add(time.Hour)
			const takes = 100
			var o outcome
			var wg sync.WaitGroup
			finished := func() int64 {
				o.mu.Lock()
				defer o.mu.Unlock()
				return int64(o.served + o.exceeded + len(o.errs))
			}
			wg.Go(func() { o.addAt(l.Take(context.Background(), "k", now)) })
			<-g.entered
			for range takes - 1 {
				wg.Go(func() { o.addAt(l.Take(context.Background(), "k", now)) })
			}
			for rounds := 1; ; rounds++ {
				if rounds > 10 {
					t.Fatalf("%d reservations for %d Takes", rounds, takes)
				}
				// One Take is in the store: every other unfinished one waits for it.
				waitUntil(t, "the other Takes wait", func() bool { return int64(l.Queued("k")) == takes-finished()-1 })
				g.proceed <- struct{}{}
				var next bool
				waitUntil(t, "the next reservation or the end", func() bool {
					select {
					case <-g.entered:
						next = true
						return true
					default:
					}
					return finished() == takes
				})
				if !next {
					break
				}
			}
			wg.Wait()
			o.check(t)
			if g.maxInflight.Load() != 1 {
				t.Errorf("%d reservations in flight at once", g.maxInflight.Load())
			}
			switch limit {
			case 1:
				if o.served != 1 || o.exceeded != takes-1 || mem.reserves.Load() != 2 {
					t.Errorf("served %d, refused %d in %d reservations; want 1, 99 in 2", o.served, o.exceeded, mem.reserves.Load())
				}
			default:
				if o.served != takes || mem.reserves.Load() > 8 { // leases of 1, 2, 4, …, 128
					t.Errorf("served %d in %d reservations", o.served, mem.reserves.Load())
				}
			}
		})
	}
}

// addAt records a Take's answer, at lbase.
func (o *outcome) addAt(u quota.Usage, err error) { o.add(u, err, lbase) }

// TestLeasesKeysIndependent: a reservation blocked in the store holds no lock
// that another quota's Take needs, even one in the same shard.
func TestLeasesKeysIndependent(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	g := newGated(s, func(id string) bool { return id == "slow" })
	l := quota.NewLeases(g, quota.LeaseConfig{})
	other := ""
	for i := 0; other == ""; i++ {
		if id := fmt.Sprint("fast-", i); l.SameShard("slow", id) {
			other = id
		}
	}
	mustPut(t, s, "slow", 10, lbase)
	mustPut(t, s, other, 10, lbase)
	done := make(chan error, 1)
	go func() {
		_, err := l.Take(context.Background(), "slow", lbase)
		done <- err
	}()
	<-g.entered
	for range 5 {
		mustTake(t, l, other, lbase) // returns while "slow" is stuck in the store
	}
	l.Refund(other, mustTake(t, l, other, lbase))
	_ = l.Stats()
	if err := l.Expire(context.Background(), lbase); err != nil {
		t.Fatal(err)
	}
	if err := l.Drop(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	g.proceed <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLeasesCanceled: a Take whose context ends while it waits returns the
// context's error; when the reserving Take's context ends, it fails alone, and the
// Takes that waited for it reserve again and are served.
func TestLeasesCanceled(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	mustPut(t, s, "k", 100, lbase)
	var blocking atomic.Bool
	blocking.Store(true)
	g := newGated(s, func(string) bool { return blocking.Load() })
	l := quota.NewLeases(g, quota.LeaseConfig{})

	ctx, cancel := context.WithCancel(context.Background())
	reserver := make(chan error, 1)
	go func() {
		_, err := l.Take(ctx, "k", lbase)
		reserver <- err
	}()
	<-g.entered
	waitCtx, cancelWait := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := l.Take(waitCtx, "k", lbase)
		impatient <- err
	}()
	var o outcome
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { o.addAt(l.Take(context.Background(), "k", lbase)) })
	}
	waitUntil(t, "6 Takes wait", func() bool { return l.Queued("k") == 6 })
	cancelWait()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("the impatient Take: %v", err)
	}
	blocking.Store(false)
	cancel()
	if err := <-reserver; !errors.Is(err, context.Canceled) {
		t.Errorf("the reserving Take: %v", err)
	}
	wg.Wait()
	o.check(t)
	if o.served != 5 {
		t.Errorf("the waiting Takes: %d served", o.served)
	}
}

// TestLeasesErrors: unknown quotas are ErrNotFound and leave nothing behind; store
// failures are wrapped and shared; a panicking store frees the quota.
func TestLeasesErrors(t *testing.T) {
	t.Parallel()
	s := newSpy(0)
	l := quota.NewLeases(s, quota.LeaseConfig{})
	ctx := context.Background()
	if _, err := l.Take(ctx, "nobody", lbase); !errors.Is(err, quota.ErrNotFound) {
		t.Fatalf("unknown quota: %v", err)
	}
	if err := l.Expire(ctx, lbase.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Leases != 0 || st.Owed != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := l.Drop(ctx, "nobody"); err != nil {
		t.Errorf("Drop of an unknown quota: %v", err)
	}

	mustPut(t, s, "k", 10, lbase)
	s.down.Store(true)
	_, err := l.Take(ctx, "k", lbase)
	if !errors.Is(err, errDown) || !strings.HasPrefix(err.Error(), "quota: lease: ") {
		t.Errorf("store down: %v", err)
	}
	s.down.Store(false)

	p := &panicky{Store: s.Store}
	lp := quota.NewLeases(p, quota.LeaseConfig{})
	func() {
		defer func() { _ = recover() }()
		p.panics.Store(true)
		_, _ = lp.Take(ctx, "k", lbase)
		t.Error("the store's panic did not reach the caller")
	}()
	p.panics.Store(false)
	if _, err := lp.Take(ctx, "k", lbase); err != nil {
		t.Errorf("after a panic: %v", err)
	}
}

type panicky struct {
	quota.Store
	panics atomic.Bool
}

func (p *panicky) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	if p.panics.Load() {
		panic("boom")
	}
	return p.Store.Reserve(ctx, id, n, now)
}

// TestLeasesDropDuringOutage: a Drop the store refuses keeps the calls owed, not
// spendable (the key was revoked or changed plan), and Expire gives them back.
// A refund that finds its lease dropped is owed too.
func TestLeasesDropDuringOutage(t *testing.T) {
	t.Parallel()
	s := newSpy(0)
	mustPut(t, s, "k", 100, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1})
	ctx := context.Background()
	now := lbase.Add(time.Hour)
	var u quota.Usage
	for range 4 { // 7 reserved, 3 left
		u = mustTake(t, l, "k", now)
	}
	s.down.Store(true)
	if err := l.Drop(ctx, "k"); !errors.Is(err, errDown) {
		t.Fatalf("Drop with the store down: %v", err)
	}
	l.Refund("k", u) // its lease is gone: owed
	if st := l.Stats(); st.Owed != 4 || st.Unspent != 0 {
		t.Fatalf("after a failed Drop and a refund: %+v", st)
	}
	if _, err := l.Take(ctx, "k", now); !errors.Is(err, errDown) {
		t.Fatalf("Take after the Drop spent a dropped call: %v", err)
	}
	if err := l.Expire(ctx, now); !errors.Is(err, errDown) {
		t.Fatalf("Expire with the store down: %v", err)
	}
	s.down.Store(false)
	if err := l.Expire(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got, st := mustUsage(t, s, "k", now).Used, l.Stats(); got != 3 || st.Owed != 0 {
		t.Errorf("store used %d (want 3 served), stats %+v", got, st)
	}
}

// TestLeasesConservation: Takes, Refunds, Drops and Expires racing on a few quotas
// leave, after Close, each store count equal to the calls served net of refunds.
func TestLeasesConservation(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, open replicasFunc) {
		s := open(t, 0)()
		ids := []string{"a", "b", "c", "d", "e"}
		for _, id := range ids {
			mustPut(t, s, id, 1<<40, lbase)
		}
		l := quota.NewLeases(s, quota.LeaseConfig{IdleTimeout: 50 * time.Millisecond, Window: 20 * time.Millisecond})
		var (
			clock  atomic.Int64 // microseconds after lbase
			served [5]atomic.Int64
			wg     sync.WaitGroup
		)
		ops := 400
		if testing.Short() {
			ops = 100
		}
		for w := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				ctx := context.Background()
				for range ops {
					now := lbase.Add(time.Duration(clock.Add(int64(r.IntN(300)))) * time.Microsecond)
					k := r.IntN(len(ids))
					switch p := r.IntN(100); {
					case p < 2:
						if err := l.Drop(ctx, ids[k]); err != nil {
							t.Error(err)
						}
					case p < 4:
						if err := l.Expire(ctx, now); err != nil {
							t.Error(err)
						}
					default:
						u, err := l.Take(ctx, ids[k], now)
						if err != nil {
							t.Error(err)
							return
						}
						served[k].Add(1)
						if p < 30 {
							l.Refund(ids[k], u)
							served[k].Add(-1)
						}
					}
				}
			})
		}
		wg.Wait()
		mustClose(t, l)
		for k, id := range ids {
			if got := mustUsage(t, s, id, lbase.Add(time.Hour)).Used; got != served[k].Load() {
				t.Errorf("%s: store used %d, served %d", id, got, served[k].Load())
			}
		}
		if st := l.Stats(); st.Leases != 0 || st.Unspent != 0 || st.Owed != 0 {
			t.Errorf("after Close: %+v", st)
		}
	})
}

// TestLeasesHotPathAllocs: Take on a held lease and Refund allocate nothing.
func TestLeasesHotPathAllocs(t *testing.T) {
	s := memstore.New(memstore.Config{})
	mustPut(t, s, "k", 1<<40, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1, MaxBatch: 1 << 20})
	ctx := context.Background()
	for l.Stats().Unspent < 5000 {
		mustTake(t, l, "k", lbase)
	}
	var u quota.Usage
	if n := testing.AllocsPerRun(1000, func() { u, _ = l.Take(ctx, "k", lbase) }); n != 0 {
		t.Errorf("Take on a held lease: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.Refund("k", u) }); n != 0 {
		t.Errorf("Refund: %v allocations", n)
	}
}

// TestLeasesStats: the counters follow reservations, releases and refunds.
func TestLeasesStats(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	mustPut(t, s, "a", 1000, lbase)
	mustPut(t, s, "b", 1000, lbase)
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1})
	for range 4 {
		mustTake(t, l, "a", lbase) // 1, 2, 4: 3 left
	}
	u := mustTake(t, l, "b", lbase)
	l.Refund("b", u)
	want := quota.LeaseStats{Leases: 2, Unspent: 4, Reservations: 4, Reserved: 8, Refunds: 1}
	if got := l.Stats(); got != want {
		t.Errorf("stats %+v\n want %+v", got, want)
	}
	mustClose(t, l)
	want = quota.LeaseStats{Reservations: 4, Reserved: 8, Releases: 2, Released: 4, Refunds: 1}
	if got := l.Stats(); got != want {
		t.Errorf("after Close: %+v\n want %+v", got, want)
	}
}

// TestLeasesRefillAhead: the Take that brings a lease down to a quarter of its
// size reserves the next batch, served already; while that reservation is in the
// store the other Takes spend what is left, and only a Take that finds the lease
// empty waits for it.
func TestLeasesRefillAhead(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	mustPut(t, s, "k", 1_000_000, lbase)
	var blocking atomic.Bool
	g := newGated(s, func(string) bool { return blocking.Load() })
	l := quota.NewLeases(g, quota.LeaseConfig{})
	now := lbase.Add(time.Hour)
	for l.LeaseSize("k") < 16 { // leases of 1, 2, 4, 8, 16
		mustTake(t, l, "k", now)
	}
	for l.Stats().Unspent > 5 {
		mustTake(t, l, "k", now)
	}
	blocking.Store(true)
	ahead := make(chan error, 1)
	go func() {
		u, err := l.Take(context.Background(), "k", now) // 4 left: a quarter of 16
		if err == nil && u.Limit != 1_000_000 {
			err = fmt.Errorf("usage %+v", u)
		}
		ahead <- err
	}()
	<-g.entered
	for range 4 {
		mustTake(t, l, "k", now) // served while the reservation is in the store
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := l.Take(context.Background(), "k", now)
		waiting <- err
	}()
	waitUntil(t, "a Take waits for the reservation", func() bool { return l.Queued("k") == 1 })
	g.proceed <- struct{}{}
	if err := <-ahead; err != nil {
		t.Fatalf("the Take that reserved ahead: %v", err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("the Take that waited: %v", err)
	}
	// The batch was 32 less the 4 left; those 4 were spent meanwhile.
	if size := l.LeaseSize("k"); size != 28 {
		t.Errorf("next lease of %d calls, want 28", size)
	}
	if g.maxInflight.Load() != 1 {
		t.Errorf("%d reservations at once", g.maxInflight.Load())
	}
}
