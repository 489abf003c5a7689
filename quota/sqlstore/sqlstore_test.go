package sqlstore_test

import (
	"context"
	"errors"
	"strings"
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

// backends opens a fresh database of each kind.
var backends = []struct {
	name string
	open func(testing.TB) *sqlx.DB
}{
	{"sqlite", testenv.SQLite},
	{"postgres", testenv.Postgres},
}

// keysTable is api_keys as a deployment has it before quota's Bootstrap: the key
// store's columns, whose rows need a user and a unique key hash.
const keysTable = `CREATE TABLE api_keys (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	key_prefix TEXT NOT NULL DEFAULT '',
	key_last4 TEXT NOT NULL DEFAULT '',
	plan TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL DEFAULT 'active',
	quota_id TEXT NOT NULL DEFAULT '',
	created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	last_used_at TIMESTAMP NULL,
	revoked_at TIMESTAMP NULL,
	revoke_reason TEXT NOT NULL DEFAULT ''
)`

func exec(tb testing.TB, db *sqlx.DB, query string, args ...any) {
	tb.Helper()
	if _, err := db.Exec(db.Rebind(query), args...); err != nil {
		tb.Fatalf("%s: %v", strings.Fields(query)[0], err)
	}
}

// insertKey adds a key row with id as its own quota, as apikey/sqlstore would, in
// the transaction ctx carries; a row that exists already is kept.
func insertKey(ctx context.Context, db *sqlx.DB, id string) error {
	_, err := sqldb.Q(ctx, db).ExecContext(ctx, db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, quota_id)
		VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`), id, "user-"+id, "hash-"+id, id)
	return err
}

// keyed is the quota store on the shared api_keys table as the gate uses it: Put
// creates the key row first, in the same transaction.
type keyed struct {
	*sqlstore.Store
	db *sqlx.DB
}

func (k keyed) Put(ctx context.Context, id string, limit int64, cycleStart time.Time) error {
	return sqldb.Atomic(ctx, k.db, func(ctx context.Context) error {
		if err := insertKey(ctx, k.db, id); err != nil {
			return err
		}
		return k.Store.Put(ctx, id, limit, cycleStart)
	})
}

// layout is where a store counts: the shared api_keys table, or a table of its own.
type layout struct {
	name string
	cfg  sqlstore.Config
	// prepare creates what exists before the quota store's Bootstrap.
	prepare func(testing.TB, *sqlx.DB)
	// wrap returns the store the suite uses.
	wrap func(*sqlstore.Store, *sqlx.DB) quota.Store
}

// dedicated counts in a quotas table with column names of its own, one of them a
// reserved word.
var dedicated = sqlstore.Config{
	Table: "quotas",
	Columns: sqlstore.Columns{
		ID: "key_id", Limit: "limit", Used: "used", CycleStart: "cycle", Granted: "granted",
	},
}

var layouts = []layout{
	{
		name:    "api_keys",
		prepare: func(tb testing.TB, db *sqlx.DB) { exec(tb, db, keysTable) },
		wrap:    func(s *sqlstore.Store, db *sqlx.DB) quota.Store { return keyed{s, db} },
	},
	{
		name:    "quotas",
		cfg:     dedicated,
		prepare: func(testing.TB, *sqlx.DB) {},
		wrap:    func(s *sqlstore.Store, _ *sqlx.DB) quota.Store { return s },
	},
}

// names returns the table and columns cfg counts in, defaults filled in.
func names(cfg sqlstore.Config) (table string, c sqlstore.Columns) {
	c = cfg.Columns
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	table = cfg.Table
	def(&table, "api_keys")
	def(&c.ID, "id")
	def(&c.Limit, "monthly_call_limit")
	def(&c.Used, "calls_used")
	def(&c.CycleStart, "cycle_start")
	def(&c.Granted, "quota_granted")
	return table, c
}

// stored reads a quota's used calls and cycle start with plain SQL.
func stored(tb testing.TB, db *sqlx.DB, cfg sqlstore.Config) func(id string) (int64, time.Time) {
	table, c := names(cfg)
	query := db.Rebind(`SELECT "` + c.Used + `", "` + c.CycleStart + `" FROM "` + table + `" WHERE "` + c.ID + `" = ?`)
	return func(id string) (int64, time.Time) {
		tb.Helper()
		var (
			used  int64
			start sqldb.Time
		)
		if err := db.QueryRow(query, id).Scan(&used, &start); err != nil {
			tb.Fatalf("read quota %q: %v", id, err)
		}
		return used, start.Time
	}
}

func bootstrapped(tb testing.TB, db *sqlx.DB, cfg sqlstore.Config) *sqlstore.Store {
	tb.Helper()
	s := sqlstore.New(db, cfg)
	if err := s.Bootstrap(context.Background()); err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		for _, l := range layouts {
			t.Run(b.name+"/"+l.name, func(t *testing.T) {
				t.Parallel()
				storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
					db := b.open(t)
					l.prepare(t, db)
					cfg := l.cfg
					cfg.Cycle = cycle
					return storetest.Harness{
						Store:  l.wrap(bootstrapped(t, db, cfg), db),
						Stored: stored(t, db, cfg),
					}
				})
			})
		}
	}
}

// replicas sends each call to the next of its stores, as a load balancer in front
// of several replicas would.
type replicas struct {
	stores []quota.Store
	next   atomic.Uint64
}

func (r *replicas) pick() quota.Store { return r.stores[r.next.Add(1)%uint64(len(r.stores))] }

func (r *replicas) Put(ctx context.Context, id string, limit int64, cycleStart time.Time) error {
	return r.pick().Put(ctx, id, limit, cycleStart)
}

func (r *replicas) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	return r.pick().Reserve(ctx, id, n, now)
}

func (r *replicas) Release(ctx context.Context, id string, n int64, cycleStart time.Time) error {
	return r.pick().Release(ctx, id, n, cycleStart)
}

func (r *replicas) Usage(ctx context.Context, id string, now time.Time) (quota.Usage, error) {
	return r.pick().Usage(ctx, id, now)
}

// TestReplicas runs the suite with every call alternating between two separate
// connection pools on one database, as two replicas of the server would, on the
// shared api_keys table.
func TestReplicas(t *testing.T) {
	t.Parallel()
	pairs := []struct {
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
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
				one, two := p.open(t)
				exec(t, one, keysTable)
				cfg := sqlstore.Config{Cycle: cycle}
				return storetest.Harness{
					Store: &replicas{stores: []quota.Store{
						keyed{bootstrapped(t, one, cfg), one},
						keyed{bootstrapped(t, two, cfg), two},
					}},
					Stored: stored(t, one, cfg),
				}
			})
		})
	}
}

// TestSharedKeysTable: on api_keys the key store creates the rows. Bootstrap adds
// only the quota columns; Put on a missing row fails clearly and creates nothing;
// once the key exists Put and Reserve work, whatever the key's status, and quota
// never writes the key store's columns.
func TestSharedKeysTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		exec(t, db, keysTable)
		s := bootstrapped(t, db, sqlstore.Config{})
		start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

		err := s.Put(ctx, "missing", 5, start)
		if err == nil || errors.Is(err, quota.ErrNotFound) || !strings.Contains(err.Error(), "create the key") {
			t.Fatalf("Put on a missing key row: %v; want an error saying the key must be created first", err)
		}
		var rows int
		if err := db.Get(&rows, `SELECT COUNT(*) FROM api_keys`); err != nil || rows != 0 {
			t.Fatalf("after the failed Put: %d rows, err %v; want none", rows, err)
		}

		// A key row as the key store creates it has a limit of 0 until Put.
		exec(t, db, `INSERT INTO api_keys (id, user_id, key_hash, status) VALUES ('k', 'u', 'h', 'active')`)
		if _, err := quota.Consume(ctx, s, "k", start); !errors.Is(err, quota.ErrExceeded) {
			t.Fatalf("Consume before Put: %v, want ErrExceeded", err)
		}
		if err := s.Put(ctx, "k", 2, start); err != nil {
			t.Fatalf("Put on an existing key row: %v", err)
		}
		if u, err := quota.Consume(ctx, s, "k", start.Add(time.Hour)); err != nil || u.Used != 1 || u.Limit != 2 {
			t.Fatalf("Consume after Put: usage %+v, err %v", u, err)
		}
		// quota knows nothing of status: the successor of a rotated key spends its
		// revoked predecessor's quota, and the gate refuses revoked keys itself.
		exec(t, db, `UPDATE api_keys SET status = 'revoked' WHERE id = 'k'`)
		if g, _, err := s.Reserve(ctx, "k", 1, start.Add(2*time.Hour)); err != nil || g != 1 {
			t.Fatalf("Reserve on a revoked key's row: granted %d, err %v; want 1", g, err)
		}
		var (
			status   string
			lastUsed sqldb.Time
		)
		if err := db.QueryRow(`SELECT status, last_used_at FROM api_keys WHERE id = 'k'`).Scan(&status, &lastUsed); err != nil {
			t.Fatal(err)
		}
		if status != "revoked" || !lastUsed.IsZero() {
			t.Errorf("quota wrote the key store's columns: status %q, last_used_at %v", status, lastUsed.Time)
		}
	})
}

// TestTransaction: every method joins the transaction ctx carries, so a key and its
// quota commit or roll back together.
func TestTransaction(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		exec(t, db, keysTable)
		s := bootstrapped(t, db, sqlstore.Config{})
		start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		rollback := errors.New("roll back")

		err := sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			if err := insertKey(ctx, db, "gone"); err != nil {
				return err
			}
			if err := s.Put(ctx, "gone", 5, start); err != nil {
				return err
			}
			// Inside the transaction the quota is there.
			if g, _, err := s.Reserve(ctx, "gone", 1, start); err != nil || g != 1 {
				t.Errorf("Reserve in the transaction: granted %d, err %v", g, err)
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			t.Fatalf("Atomic: %v", err)
		}
		if _, err := s.Usage(ctx, "gone", start); !errors.Is(err, quota.ErrNotFound) {
			t.Errorf("after the rollback: Usage err = %v, want ErrNotFound", err)
		}

		err = sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			if err := insertKey(ctx, db, "kept"); err != nil {
				return err
			}
			if err := s.Put(ctx, "kept", 5, start); err != nil {
				return err
			}
			if _, err := quota.Consume(ctx, s, "kept", start); err != nil {
				return err
			}
			if err := s.Release(ctx, "kept", 1, start); err != nil {
				return err
			}
			_, err := quota.Consume(ctx, s, "kept", start)
			return err
		})
		if err != nil {
			t.Fatalf("Atomic: %v", err)
		}
		if u, err := s.Usage(ctx, "kept", start); err != nil || u.Limit != 5 || u.Used != 1 {
			t.Errorf("after the commit: usage %+v, err %v; want limit 5, used 1", u, err)
		}
	})
}

// TestBootstrapLegacyTable: a table from before quotas gains the quota columns;
// the rows it had get DefaultLimit (0 unless set), nothing used and a cycle
// starting at bootstrap time, and a second Bootstrap changes no row.
func TestBootstrapLegacyTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		for _, table := range []string{"api_keys", "old_keys"} {
			exec(t, db, `CREATE TABLE `+table+` (
				id TEXT PRIMARY KEY,
				user_id TEXT NOT NULL,
				key_hash TEXT NOT NULL UNIQUE,
				status TEXT NOT NULL DEFAULT 'active',
				created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
			)`)
			exec(t, db, `INSERT INTO `+table+` (id, user_id, key_hash) VALUES ('old1', 'u1', 'h1')`)
			exec(t, db, `INSERT INTO `+table+` (id, user_id, key_hash, status) VALUES ('old2', 'u2', 'h2', 'revoked')`)
		}
		before := time.Now()
		s := bootstrapped(t, db, sqlstore.Config{DefaultLimit: 500})
		after := time.Now()
		if err := s.Put(ctx, "old2", 7, before); err != nil {
			t.Fatal(err)
		}
		if err := s.Bootstrap(ctx); err != nil { // idempotent: no row changes
			t.Fatalf("second bootstrap: %v", err)
		}
		if u, err := s.Usage(ctx, "old2", before); err != nil || u.Limit != 7 {
			t.Errorf("a second Bootstrap changed a row: usage %+v, err %v; want limit 7", u, err)
		}

		u, err := s.Usage(ctx, "old1", after)
		if err != nil {
			t.Fatal(err)
		}
		if u.Limit != 500 || u.Used != 0 {
			t.Errorf("legacy row %+v; want limit 500, nothing used", u)
		}
		if u.CycleStart.Before(before.Truncate(time.Microsecond)) || u.CycleStart.After(after) {
			t.Errorf("legacy row's cycle starts at %v, want between %v and %v", u.CycleStart, before, after)
		}
		g, u, err := s.Reserve(ctx, "old1", 1, after)
		if err != nil || g != 1 || u.Used != 1 {
			t.Fatalf("Reserve on a legacy row: granted %d, usage %+v, err %v", g, u, err)
		}
		if err := s.Release(ctx, "old1", 1, u.CycleStart); err != nil {
			t.Fatalf("Release on a legacy row: %v", err)
		}
		if u, err := s.Usage(ctx, "old1", after); err != nil || u.Used != 0 {
			t.Errorf("legacy row after the release: usage %+v, err %v; want used 0", u, err)
		}

		// With no DefaultLimit, legacy rows grant nothing until Put.
		zero := bootstrapped(t, db, sqlstore.Config{Table: "old_keys"})
		if _, err := quota.Consume(ctx, zero, "old1", after); !errors.Is(err, quota.ErrExceeded) {
			t.Errorf("Consume on a legacy row with no DefaultLimit: %v, want ErrExceeded", err)
		}
		if err := zero.Put(ctx, "old1", 1, after); err != nil {
			t.Fatal(err)
		}
		if _, err := quota.Consume(ctx, zero, "old1", after); err != nil {
			t.Errorf("Consume after Put: %v", err)
		}
	})
}

// oldKeysTable is api_keys as the schema before issue 10 created it: the quota
// columns are there, as 32-bit INTEGERs on PostgreSQL.
const oldKeysTable = `CREATE TABLE api_keys (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	status TEXT NOT NULL DEFAULT 'active',
	monthly_call_limit INTEGER NOT NULL DEFAULT 10000,
	calls_used INTEGER NOT NULL DEFAULT 0,
	cycle_start TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	quota_granted INTEGER NOT NULL DEFAULT 0,
	created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	last_used_at TIMESTAMP NULL,
	revoked_at TIMESTAMP NULL,
	revoke_reason TEXT NOT NULL DEFAULT ''
)`

// TestOldSchema: on the previous api_keys schema Bootstrap widens the counters to
// BIGINT on PostgreSQL and keeps every row; a row whose cycle_start the column
// default wrote (CURRENT_TIMESTAMP text on SQLite) reserves and releases; and a
// limit of 3,000,000,000 works.
func TestOldSchema(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		exec(t, db, oldKeysTable)
		exec(t, db, `INSERT INTO api_keys (id, user_id, key_hash) VALUES ('old', 'u', 'h')`)
		s := bootstrapped(t, db, sqlstore.Config{DefaultLimit: 1})
		if sqldb.IsPostgres(db) {
			var types []string
			err := db.Select(&types, `SELECT column_name || ' ' || data_type FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = 'api_keys'
				AND column_name IN ('monthly_call_limit', 'calls_used', 'quota_granted') ORDER BY column_name`)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"calls_used bigint", "monthly_call_limit bigint", "quota_granted bigint"}
			if strings.Join(types, ", ") != strings.Join(want, ", ") {
				t.Errorf("column types after Bootstrap: %v, want %v", types, want)
			}
		}

		// The old row keeps the old column default, 10,000 (DefaultLimit is only for
		// a limit column Bootstrap adds), and its default cycle start.
		var start sqldb.Time
		if err := db.Get(&start, `SELECT cycle_start FROM api_keys WHERE id = 'old'`); err != nil {
			t.Fatal(err)
		}
		now := start.Add(time.Hour)
		g, u, err := s.Reserve(ctx, "old", 3, now)
		if err != nil || g != 3 || u.Limit != 10000 || !u.CycleStart.Equal(start.Time) {
			t.Fatalf("Reserve on the old row: granted %d, usage %+v, err %v; want 3 of 10000 since %v", g, u, err, start.Time)
		}
		if err := s.Release(ctx, "old", 2, u.CycleStart); err != nil {
			t.Fatal(err)
		}
		if u, err := s.Usage(ctx, "old", now); err != nil || u.Used != 1 {
			t.Errorf("after releasing 2 of 3 on the old row: usage %+v, err %v; want used 1", u, err)
		}

		const big = 3_000_000_000
		if err := s.Put(ctx, "old", big, now); err != nil {
			t.Fatalf("Put(3e9): %v", err)
		}
		if g, u, err := s.Reserve(ctx, "old", big-1, now); err != nil || g != big-1 || u.Limit != big {
			t.Fatalf("Reserve(3e9-1): granted %d, usage %+v, err %v", g, u, err)
		}
		if g, u, err := s.Reserve(ctx, "old", 5, now); err != nil || g != 1 || u.Used != big || u.Remaining() != 0 {
			t.Fatalf("Reserve(5) with 1 left: granted %d, usage %+v, err %v", g, u, err)
		}
	})
}

// TestDedicatedTable: a quota table of its own is created with the configured
// names, or completed when it exists with some of them; Put creates its rows, and
// no api_keys table is involved.
func TestDedicatedTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		// An existing table with the ID and a 32-bit limit only.
		exec(t, db, `CREATE TABLE quotas (key_id TEXT PRIMARY KEY, "limit" INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '')`)
		exec(t, db, `INSERT INTO quotas (key_id, "limit", note) VALUES ('a', 4, 'kept')`)
		s := bootstrapped(t, db, dedicated)
		bootstrapped(t, db, dedicated) // idempotent

		start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		// Bootstrap gave the row a cycle starting now and kept its limit.
		if g, u, err := s.Reserve(ctx, "a", 10, time.Now()); err != nil || g != 4 || u.Limit != 4 {
			t.Fatalf("Reserve on the existing row: granted %d, usage %+v, err %v; want 4", g, u, err)
		}
		for _, id := range []string{"b", "c"} {
			if err := s.Put(ctx, id, 3_000_000_000, start); err != nil {
				t.Fatalf("Put(%q): %v", id, err)
			}
		}
		if g, _, err := s.Reserve(ctx, "b", 2_999_999_999, start); err != nil || g != 2_999_999_999 {
			t.Fatalf("Reserve on a new row: granted %d, err %v", g, err)
		}
		var note string
		if err := db.Get(&note, `SELECT note FROM quotas WHERE key_id = 'a'`); err != nil || note != "kept" {
			t.Errorf("the table's own column: %q, err %v; want it untouched", note, err)
		}
		var tables int
		q := `SELECT COUNT(*) FROM sqlite_master WHERE name = 'api_keys'`
		if sqldb.IsPostgres(db) {
			q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'api_keys'`
		}
		if err := db.Get(&tables, q); err != nil || tables != 0 {
			t.Errorf("api_keys tables: %d, err %v; want none", tables, err)
		}
	})
}

// TestConfigErrors: names that are not plain identifiers, or clash, and a negative
// DefaultLimit are refused before any SQL runs.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	exec(t, db, `CREATE TABLE victims (id TEXT)`)
	cases := []struct {
		name string
		cfg  sqlstore.Config
	}{
		{"injection in the table", sqlstore.Config{Table: `api_keys"; DROP TABLE victims; --`}},
		{"injection in a column", sqlstore.Config{Columns: sqlstore.Columns{Used: "calls_used = 0; DROP TABLE victims"}}},
		{"upper case", sqlstore.Config{Table: "Quotas"}},
		{"leading digit", sqlstore.Config{Columns: sqlstore.Columns{Limit: "1limit"}}},
		{"schema-qualified", sqlstore.Config{Table: "public.quotas"}},
		{"too long", sqlstore.Config{Table: strings.Repeat("q", 64)}},
		{"two columns with one name", sqlstore.Config{Columns: sqlstore.Columns{Used: "calls_used", Granted: "calls_used"}}},
		{"a column named like a default of another", sqlstore.Config{Columns: sqlstore.Columns{Limit: "id"}}},
		{"negative default limit", sqlstore.Config{DefaultLimit: -1}},
	}
	ctx := context.Background()
	now := time.Now()
	for _, c := range cases {
		s := sqlstore.New(db, c.cfg)
		errs := map[string]error{"Bootstrap": s.Bootstrap(ctx), "Put": s.Put(ctx, "k", 1, now)}
		_, _, errs["Reserve"] = s.Reserve(ctx, "k", 1, now)
		errs["Release"] = s.Release(ctx, "k", 1, now)
		_, errs["Usage"] = s.Usage(ctx, "k", now)
		for method, err := range errs {
			if err == nil || !strings.Contains(err.Error(), "quota/sqlstore: config") {
				t.Errorf("%s: %s: %v, want the configuration error", c.name, method, err)
			}
		}
	}
	if err := db.Get(new(int), `SELECT COUNT(*) FROM victims`); err != nil {
		t.Fatalf("the victims table is gone: %v", err)
	}
	var tables int
	if err := db.Get(&tables, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'`); err != nil || tables != 1 {
		t.Errorf("%d tables after refused configurations, err %v; want only victims", tables, err)
	}
	// Every name at its limits is accepted.
	s := bootstrapped(t, db, sqlstore.Config{Table: "_" + strings.Repeat("q", 62), Columns: sqlstore.Columns{ID: "k_1"}})
	if err := s.Put(ctx, "k", 1, now); err != nil {
		t.Fatal(err)
	}
}

// TestMissingIDColumn: an existing table without the ID column is an error, not a
// column Bootstrap adds.
func TestMissingIDColumn(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		exec(t, db, `CREATE TABLE quotas (name TEXT PRIMARY KEY)`)
		err := sqlstore.New(db, sqlstore.Config{Table: "quotas"}).Bootstrap(context.Background())
		if err == nil || !strings.Contains(err.Error(), `no column "id"`) {
			t.Fatalf("Bootstrap on a table without an id column: %v", err)
		}
	})
}

// TestConcurrentBootstrap: processes that start together bootstrap one legacy table
// once: no error, and its rows get the default limit.
func TestConcurrentBootstrap(t *testing.T) {
	t.Parallel()
	pools := []struct {
		name string
		open func(testing.TB) []*sqlx.DB
	}{
		{"sqlite", func(t testing.TB) []*sqlx.DB {
			path := testenv.SQLitePath(t)
			return []*sqlx.DB{testenv.OpenSQLite(t, path), testenv.OpenSQLite(t, path), testenv.OpenSQLite(t, path), testenv.OpenSQLite(t, path)}
		}},
		{"postgres", func(t testing.TB) []*sqlx.DB {
			url := testenv.PostgresURL(t)
			return []*sqlx.DB{testenv.OpenPostgres(t, url), testenv.OpenPostgres(t, url), testenv.OpenPostgres(t, url), testenv.OpenPostgres(t, url)}
		}},
	}
	for _, p := range pools {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dbs := p.open(t)
			exec(t, dbs[0], keysTable)
			exec(t, dbs[0], `INSERT INTO api_keys (id, user_id, key_hash) VALUES ('old', 'u', 'h')`)
			errs := make(chan error, len(dbs))
			for _, db := range dbs {
				go func() { errs <- sqlstore.New(db, sqlstore.Config{DefaultLimit: 9}).Bootstrap(context.Background()) }()
			}
			for range dbs {
				if err := <-errs; err != nil {
					t.Errorf("concurrent bootstrap: %v", err)
				}
			}
			u, err := sqlstore.New(dbs[0], sqlstore.Config{}).Usage(context.Background(), "old", time.Now())
			if err != nil || u.Limit != 9 {
				t.Errorf("after concurrent bootstraps: usage %+v, err %v; want limit 9", u, err)
			}
		})
	}
}

// TestBackendError: a failing database surfaces as a wrapped error, never as a
// grant or as one of the quota sentinels, and nothing failed is cached.
func TestBackendError(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := sqlstore.New(db, dedicated) // no Bootstrap: the table is missing
		g, _, err := s.Reserve(ctx, "k", 1, time.Now())
		if err == nil || g != 0 || errors.Is(err, quota.ErrNotFound) || errors.Is(err, quota.ErrExceeded) ||
			!strings.HasPrefix(err.Error(), "quota/sqlstore: reserve: ") {
			t.Fatalf("Reserve without a table: granted %d, err %v; want 0 and a wrapped backend error", g, err)
		}
		if _, err := s.Usage(ctx, "k", time.Now()); err == nil || errors.Is(err, quota.ErrNotFound) {
			t.Fatalf("Usage without a table: %v, want a backend error", err)
		}
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "k", 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		if g, _, err := s.Reserve(ctx, "k", 1, time.Now()); err != nil || g != 1 {
			t.Fatalf("Reserve after Bootstrap: granted %d, err %v", g, err)
		}
	})
}

// TestTune: New bounds a pool left at database/sql's defaults, and keeps one the
// application bounded.
func TestTune(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	db.SetMaxOpenConns(0) // testenv bounds its pools; undo it
	sqlstore.New(db, sqlstore.Config{})
	if got := db.Stats().MaxOpenConnections; got != sqldb.SQLiteConns {
		t.Errorf("an unbounded pool: MaxOpenConnections %d after New, want %d", got, sqldb.SQLiteConns)
	}
	db.SetMaxOpenConns(2)
	sqlstore.New(db, sqlstore.Config{})
	if got := db.Stats().MaxOpenConnections; got != 2 {
		t.Errorf("a bounded pool: MaxOpenConnections %d after New, want the application's 2", got)
	}
}

// TestJournal: every reservation and release that changes a quota records a token
// in its own transaction (Confirm finds it), refusals record none, and tokens older
// than an hour are pruned.
func TestJournal(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		clock := start
		cfg := dedicated
		cfg.Now = func() time.Time { return clock }
		s := bootstrapped(t, db, cfg)
		if err := s.Put(ctx, "j", 2, start); err != nil {
			t.Fatal(err)
		}
		count := func() (n int) {
			t.Helper()
			if err := db.Get(&n, `SELECT COUNT(*) FROM quota_journal`); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for range 3 { // two granted, one refused
			if _, _, err := s.Reserve(ctx, "j", 1, start.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Release(ctx, "j", 1, start); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 3 {
			t.Fatalf("%d tokens, want 3 (two reservations, one release)", n)
		}
		var tokens []string
		if err := db.Select(&tokens, `SELECT token FROM quota_journal`); err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			if ok, err := s.Confirm(ctx, tok); err != nil || !ok {
				t.Errorf("Confirm(%s) = %v, %v; want true", tok, ok, err)
			}
		}
		if ok, err := s.Confirm(ctx, "never-written"); err != nil || ok {
			t.Errorf("Confirm of an unknown token = %v, %v; want false", ok, err)
		}
		// A release two hours later prunes the old tokens.
		clock = start.Add(2 * time.Hour)
		if err := s.Release(ctx, "j", 1, start); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 1 {
			t.Fatalf("%d tokens after pruning, want 1 (the newest)", n)
		}
	})
}
