package sqlstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/quota/storetest"
)

// harness returns a storetest harness whose Store sends each reservation to the
// next of stores in turn; they all share db's table, which the harness writes
// with plain SQL.
func harness(t *testing.T, db *sqlx.DB, stores ...quota.Store) storetest.Harness {
	t.Helper()
	var store quota.Store = stores[0]
	if len(stores) > 1 {
		store = &replicas{stores: stores}
	}
	return storetest.Harness{
		Store: store,
		Add: func(id string, limit int64, cycleStart time.Time) {
			t.Helper()
			insertKey(t, db, id, limit, cycleStart)
		},
		Revoke: func(id string) {
			t.Helper()
			_, err := db.Exec(db.Rebind(`UPDATE api_keys SET status = 'revoked', revoked_at = ? WHERE id = ?`),
				sqldb.T(time.Now()), id)
			if err != nil {
				t.Fatalf("revoke key %q: %v", id, err)
			}
		},
		Stored: func(id string) (int64, time.Time) {
			t.Helper()
			var (
				used  int64
				start sqldb.Time
			)
			err := db.QueryRow(db.Rebind(`SELECT calls_used, cycle_start FROM api_keys WHERE id = ?`), id).Scan(&used, &start)
			if err != nil {
				t.Fatalf("read key %q: %v", id, err)
			}
			return used, start.Time
		},
	}
}

// insertKey adds an active key row with plain SQL, as apikey/sqlstore would.
func insertKey(tb testing.TB, db *sqlx.DB, id string, limit int64, cycleStart time.Time) {
	tb.Helper()
	_, err := db.Exec(db.Rebind(`INSERT INTO api_keys
		(id, user_id, key_hash, status, monthly_call_limit, calls_used, cycle_start)
		VALUES (?, ?, ?, 'active', ?, 0, ?)`),
		id, "user-"+id, "hash-"+id, limit, sqldb.T(cycleStart))
	if err != nil {
		tb.Fatalf("add key %q: %v", id, err)
	}
}

// replicas sends reservations to its stores round-robin, as a load balancer in
// front of several replicas would.
type replicas struct {
	stores []quota.Store
	next   atomic.Uint64
}

func (r *replicas) Reserve(ctx context.Context, keyID string, n int64, now time.Time) (int64, quota.Usage, error) {
	s := r.stores[r.next.Add(1)%uint64(len(r.stores))]
	return s.Reserve(ctx, keyID, n, now)
}

func (r *replicas) Release(ctx context.Context, keyID string, n int64, cycleStart time.Time) error {
	s := r.stores[r.next.Add(1)%uint64(len(r.stores))]
	return s.Release(ctx, keyID, n, cycleStart)
}

func bootstrapped(t *testing.T, db *sqlx.DB, cycle time.Duration) *sqlstore.Store {
	t.Helper()
	s := sqlstore.New(db, sqlstore.Config{Cycle: cycle})
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return s
}

// The suite checks Usage only on stores that have it; make sure this one does.
var _ storetest.UsageReader = (*sqlstore.Store)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		open func(testing.TB) *sqlx.DB
	}{
		{"sqlite", testenv.SQLite},
		{"postgres", testenv.Postgres},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
				db := b.open(t)
				return harness(t, db, bootstrapped(t, db, cycle))
			})
		})
	}
}

// TestReplicas runs the suite with every reservation alternating between two
// separate connection pools on one database, as two replicas of the server would.
func TestReplicas(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		// open returns two independent handles on one fresh database.
		open func(testing.TB) (*sqlx.DB, *sqlx.DB)
	}{
		{"sqlite", func(t testing.TB) (*sqlx.DB, *sqlx.DB) {
			path := testenv.SQLitePath(t)
			return testenv.OpenSQLite(t, path), testenv.OpenSQLite(t, path)
		}},
		{"postgres", func(t testing.TB) (*sqlx.DB, *sqlx.DB) {
			url := testenv.PostgresURL(t)
			return testenv.OpenPostgres(t, url), testenv.OpenPostgres(t, url)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
				one, two := b.open(t)
				first := bootstrapped(t, one, cycle)
				second := bootstrapped(t, two, cycle)
				return harness(t, one, first, second)
			})
		})
	}
}

// TestBootstrapLegacyTable: an api_keys table from before quotas gains the quota
// columns, its rows get a limit of 10,000 and a cycle starting now, and Reserve
// works on them.
func TestBootstrapLegacyTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		for _, q := range []string{
			`CREATE TABLE api_keys (
				id TEXT PRIMARY KEY,
				user_id TEXT NOT NULL,
				key_hash TEXT NOT NULL UNIQUE,
				status TEXT NOT NULL DEFAULT 'active',
				created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
			)`,
			`INSERT INTO api_keys (id, user_id, key_hash) VALUES ('old1', 'u1', 'h1')`,
			`INSERT INTO api_keys (id, user_id, key_hash, status) VALUES ('old2', 'u2', 'h2', 'revoked')`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("legacy schema: %v", err)
			}
		}
		s := sqlstore.New(db, sqlstore.Config{})
		for range 2 { // idempotent
			if err := s.Bootstrap(ctx); err != nil {
				t.Fatalf("bootstrap on the legacy table: %v", err)
			}
		}
		now := time.Now()
		g, u, err := s.Reserve(ctx, "old1", 1, now)
		if err != nil || g != 1 {
			t.Fatalf("Reserve on a legacy row: granted %d, err %v", g, err)
		}
		if u.Limit != 10000 || u.Used != 1 || u.Remaining() != 9999 {
			t.Errorf("legacy row usage %+v; want limit 10000, used 1", u)
		}
		if d := now.Sub(u.CycleStart); d < -time.Minute || d > time.Minute {
			t.Errorf("legacy row's cycle starts at %v, want about now (%v)", u.CycleStart, now)
		}
		// The backfilled cycle_start (CURRENT_TIMESTAMP text on SQLite) still
		// matches the CycleStart that Reserve reported.
		if err := s.Release(ctx, "old1", 1, u.CycleStart); err != nil {
			t.Fatalf("Release on a legacy row: %v", err)
		}
		if u, err := s.Usage(ctx, "old1", now); err != nil || u.Used != 0 {
			t.Errorf("legacy row after the release: usage %+v, err %v; want used 0", u, err)
		}
		if _, _, err := s.Reserve(ctx, "old2", 1, now); !errors.Is(err, quota.ErrRevoked) {
			t.Errorf("Reserve on a revoked legacy row: err = %v, want ErrRevoked", err)
		}
	})
}

// TestLastUsedAt: a granted call stamps last_used_at with its now; a refused one
// writes nothing.
func TestLastUsedAt(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := bootstrapped(t, db, 0)
		h := harness(t, db, s)
		start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		h.Add("k", 1, start)
		lastUsed := func() time.Time {
			var v sqldb.Time
			if err := db.QueryRow(`SELECT last_used_at FROM api_keys WHERE id = 'k'`).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v.Time
		}
		if !lastUsed().IsZero() {
			t.Fatalf("a new key has last_used_at %v", lastUsed())
		}
		first := start.Add(time.Hour)
		if _, err := quota.Consume(ctx, s, "k", first); err != nil {
			t.Fatal(err)
		}
		if got := lastUsed(); !got.Equal(first) {
			t.Errorf("after a granted call last_used_at = %v, want %v", got, first)
		}
		if _, err := quota.Consume(ctx, s, "k", first.Add(time.Hour)); !errors.Is(err, quota.ErrExceeded) {
			t.Fatalf("second call on a limit of 1: err = %v", err)
		}
		if got := lastUsed(); !got.Equal(first) {
			t.Errorf("a refused call moved last_used_at to %v", got)
		}
	})
}

// TestBackendError: a failing database surfaces as a wrapped error, never as a
// grant or as one of the quota sentinels.
func TestBackendError(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		s := sqlstore.New(db, sqlstore.Config{}) // no Bootstrap: the table is missing
		g, _, err := s.Reserve(context.Background(), "k", 1, time.Now())
		if err == nil || g != 0 || errors.Is(err, quota.ErrNotFound) || errors.Is(err, quota.ErrExceeded) {
			t.Fatalf("Reserve without a table: granted %d, err %v; want 0 and a backend error", g, err)
		}
		// Once the table exists the store recovers: nothing failed was cached.
		h := harness(t, db, s)
		if err := s.Bootstrap(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.Add("k", 1, time.Now())
		if g, _, err := s.Reserve(context.Background(), "k", 1, time.Now()); err != nil || g != 1 {
			t.Fatalf("Reserve after Bootstrap: granted %d, err %v", g, err)
		}
	})
}
