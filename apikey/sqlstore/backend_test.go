package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// quotaColumns are quota/sqlstore's columns of a shared api_keys table.
var quotaColumns = []string{"monthly_call_limit", "calls_used", "cycle_start", "quota_granted"}

// columnsOf returns the lower-case column names of api_keys.
func columnsOf(t *testing.T, db *sqlx.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM api_keys WHERE 1=0`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[strings.ToLower(n)] = true
	}
	return have
}

func TestBootstrapUpgradesLegacyTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		// The table as the original service created it, before quotas.
		db.MustExec(tables["legacy"])
		legacy := []struct{ id, user, raw, plan, status string }{
			{"legacy1", "alice", "rr_live_legacyAAAA", "gold", "active"},
			{"legacy2", "alice", "rr_live_legacyBBBB", "gold", "revoked"},
			{"legacy3", "bob", "rr_live_legacyCCCC", "silver", "active"},
		}
		ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
		for _, l := range legacy {
			db.MustExec(ins, l.id, l.user, apikey.Hash(l.raw), l.plan, l.status, "2024-01-02 03:04:05")
		}

		s := sqlstore.New(db, sqlstore.Config{DefaultPlan: "free"})
		for i := range 2 { // idempotent
			if err := s.Bootstrap(ctx); err != nil {
				t.Fatalf("Bootstrap %d: %v", i+1, err)
			}
		}
		for _, l := range legacy {
			k, err := s.ByHash(ctx, apikey.Hash(l.raw))
			if err != nil {
				t.Fatalf("ByHash(%s) after bootstrap: %v", l.id, err)
			}
			if k.ID != l.id || k.UserID != l.user || k.Plan != l.plan || string(k.Status) != l.status {
				t.Errorf("row %s changed: %+v", l.id, k)
			}
			if want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC); !k.CreatedAt.Equal(want) {
				t.Errorf("row %s: created_at %v, want %v", l.id, k.CreatedAt, want)
			}
			// Each legacy key keeps spending its own row's quota.
			if k.QuotaID != l.id {
				t.Errorf("row %s: quota ID %q, want its own ID", l.id, k.QuotaID)
			}
		}
		var blank int
		if err := db.Get(&blank, `SELECT COUNT(*) FROM api_keys WHERE quota_id = ''`); err != nil || blank != 0 {
			t.Errorf("%d rows with an empty quota_id after Bootstrap (%v), want 0", blank, err)
		}
		// apikey adds its own columns only.
		have := columnsOf(t, db)
		for _, c := range quotaColumns {
			if have[c] {
				t.Errorf("Bootstrap added the quota column %s", c)
			}
		}
		for _, c := range []string{"key_prefix", "key_last4", "quota_id", "last_used_at", "revoked_at", "revoke_reason"} {
			if !have[c] {
				t.Errorf("Bootstrap did not add %s", c)
			}
		}
		// The upgraded table enforces one active key per user ...
		_, k, _ := apikey.New("", "alice", "gold", now)
		if err := s.Create(ctx, &k); !errors.Is(err, apikey.ErrActiveExists) {
			t.Errorf("Create for alice, who has a legacy active key = %v, want ErrActiveExists", err)
		}
		// ... and legacy keys rotate like any other, their quota going with them.
		_, next, _ := apikey.New("", "", "", now)
		old, err := s.Rotate(ctx, "bob", &next, now, 0)
		if err != nil || old.ID != "legacy3" || next.Plan != "silver" || next.QuotaID != "legacy3" {
			t.Errorf("Rotate(bob) = %+v, %v; successor %+v", old, err, next)
		}
	})
}

func TestBootstrapDefaultPlan(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		for _, bad := range []string{"go ld", "gold'", "x'; DROP TABLE api_keys; --", "金"} {
			err := sqlstore.New(db, sqlstore.Config{DefaultPlan: bad}).Bootstrap(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), "apikey/sqlstore: ") {
				t.Errorf("Bootstrap with default plan %q = %v, want an error", bad, err)
			}
		}
		if _, err := db.Exec(`SELECT 1 FROM api_keys`); err == nil {
			t.Fatal("a refused Bootstrap created the table")
		}
		// A table from before plans: its rows get the default plan.
		db.MustExec(`CREATE TABLE api_keys (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
			key_hash TEXT NOT NULL UNIQUE, status TEXT NOT NULL)`)
		db.MustExec(db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, status) VALUES (?, ?, ?, ?)`),
			"old1", "alice", apikey.Hash("tk_old"), "active")
		if err := sqlstore.New(db, sqlstore.Config{DefaultPlan: "gold.v2_x-1"}).Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		// Once the column exists, another default changes no row.
		s := sqlstore.New(db, sqlstore.Config{DefaultPlan: "free"})
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		k, err := s.ByID(ctx, "old1")
		if err != nil || k.Plan != "gold.v2_x-1" || k.QuotaID != "old1" || !k.Active() {
			t.Errorf("legacy row reads %+v, %v; want plan gold.v2_x-1, quota old1, active", k, err)
		}
	})
}

// TestSharedTableQuotaColumnsUntouched: on the table apikey and quota share, apikey
// neither reads nor writes the quota's columns; a successor names its
// predecessor's quota instead of copying its counters.
func TestSharedTableQuotaColumnsUntouched(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		db.MustExec(sharedTable)
		ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status, monthly_call_limit,
			calls_used, cycle_start, quota_granted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		cycle := "2026-11-01 00:00:00"
		db.MustExec(ins, "k_alice", "alice", apikey.Hash("tk_alice"), "gold", "active", 500, 42, cycle, 1, "2026-10-01 00:00:00")
		db.MustExec(ins, "k_bob", "bob", apikey.Hash("tk_bob"), "free", "active", 100, 7, cycle, 1, "2026-10-01 00:00:00")
		s := open(t, db)

		type counters struct {
			Limit   int64      `db:"monthly_call_limit"`
			Used    int64      `db:"calls_used"`
			Cycle   sqldb.Time `db:"cycle_start"`
			Granted int64      `db:"quota_granted"`
		}
		read := func(id string) counters {
			t.Helper()
			var c counters
			q := db.Rebind(`SELECT monthly_call_limit, calls_used, cycle_start, quota_granted FROM api_keys WHERE id = ?`)
			if err := db.Get(&c, q, id); err != nil {
				t.Fatalf("counters of %s: %v", id, err)
			}
			return c
		}
		alice, bob := read("k_alice"), read("k_bob")

		_, next, _ := apikey.New("", "", "", now)
		if _, err := s.Rotate(ctx, "alice", &next, now, 0); err != nil {
			t.Fatal(err)
		}
		if next.QuotaID != "k_alice" {
			t.Errorf("successor spends quota %q, want k_alice", next.QuotaID)
		}
		if err := s.Revoke(ctx, next.ID, "test", now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RevokeUser(ctx, "bob", "test", now); err != nil {
			t.Fatal(err)
		}
		_, carol, _ := apikey.New("", "carol", "gold", now)
		if err := s.Create(ctx, &carol); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"k_alice", "k_bob"} {
			if _, err := s.ByID(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if got := read("k_alice"); got != alice {
			t.Errorf("alice's counters changed from %+v to %+v", alice, got)
		}
		if got := read("k_bob"); got != bob {
			t.Errorf("bob's counters changed from %+v to %+v", bob, got)
		}
		// Rows apikey inserts leave the quota columns to their defaults.
		for _, id := range []string{next.ID, carol.ID} {
			if got := read(id); got.Limit != 10000 || got.Used != 0 || got.Granted != 0 {
				t.Errorf("new row %s has counters %+v, want the column defaults", id, got)
			}
		}
	})
}

// TestRowWithoutQuotaID: a row written without quota_id after Bootstrap (by an older
// replica during a rolling upgrade) spends its own quota, as it did before.
func TestRowWithoutQuotaID(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		db.MustExec(db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			"k_old", "alice", apikey.Hash("tk_old"), "gold", "active", sqldb.T(now))
		p, err := apikey.NewAuthenticator(s, apikey.Config{}).Authenticate(ctx, "tk_old")
		if err != nil || p.QuotaID != "k_old" {
			t.Errorf("Authenticate = %+v, %v; want quota k_old", p, err)
		}
		_, next, _ := apikey.New("", "", "", now)
		old, err := s.Rotate(ctx, "alice", &next, now, 0)
		if err != nil || old.QuotaID != "k_old" || next.QuotaID != "k_old" {
			t.Errorf("Rotate = %+v, %v; successor quota %q; want k_old for both", old, err, next.QuotaID)
		}
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		var q string
		if err := db.Get(&q, `SELECT quota_id FROM api_keys WHERE id = 'k_old'`); err != nil || q != "k_old" {
			t.Errorf("after Bootstrap k_old's quota_id is %q (%v), want k_old", q, err)
		}
	})
}

// indexDef returns the definition of the index named name on api_keys, "" if none.
func indexDef(t *testing.T, db *sqlx.DB, name string) string {
	t.Helper()
	q := `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`
	if sqldb.IsPostgres(db) {
		q = `SELECT indexdef FROM pg_indexes WHERE indexname = $1 AND schemaname = current_schema()`
	}
	var defs []string
	if err := db.Select(&defs, q, name); err != nil {
		t.Fatalf("reading index %s: %v", name, err)
	}
	if len(defs) == 0 {
		return ""
	}
	return defs[0]
}

func TestIndexes(t *testing.T) {
	t.Parallel()
	for origin, ddl := range tables {
		t.Run(origin, func(t *testing.T) {
			t.Parallel()
			testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
				if ddl != "" {
					db.MustExec(ddl)
				}
				s := open(t, db)
				if err := s.Bootstrap(context.Background()); err != nil {
					t.Fatal(err)
				}
				def := indexDef(t, db, "api_keys_one_active")
				for _, want := range []string{"UNIQUE", "(user_id)", "WHERE", "status", "'active'", "expires_at IS NULL"} {
					if !strings.Contains(def, want) {
						t.Errorf("index api_keys_one_active %q lacks %q", def, want)
					}
				}
				if def := indexDef(t, db, "api_keys_user"); !strings.Contains(def, "(user_id)") {
					t.Errorf("index api_keys_user is %q", def)
				}
				// key_hash is unique: by the table's own constraint, or by the
				// index Bootstrap adds to a table that quota/sqlstore created.
				def = indexDef(t, db, "api_keys_hash")
				if origin == "quota_first" {
					if !strings.Contains(def, "UNIQUE") || !strings.Contains(def, "(key_hash)") {
						t.Errorf("index api_keys_hash is %q, want UNIQUE on (key_hash)", def)
					}
				} else if def != "" {
					t.Errorf("Bootstrap added %q to a table whose key_hash is unique already", def)
				}
				ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status) VALUES (?, ?, ?, 'free', ?)`)
				db.MustExec(ins, "a", "u", "h1", "revoked")
				if _, err := db.Exec(ins, "b", "v", "h1", "revoked"); !sqldb.IsUniqueViolation(err) {
					t.Errorf("a duplicate hash: %v, want a unique violation", err)
				}
			})
		})
	}
}

func TestBootstrapConcurrent(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t *testing.T) func() *sqlx.DB{
		"sqlite": func(t *testing.T) func() *sqlx.DB {
			path := testenv.SQLitePath(t)
			return func() *sqlx.DB { return testenv.OpenSQLite(t, path) }
		},
		"postgres": func(t *testing.T) func() *sqlx.DB {
			url := testenv.PostgresURL(t)
			return func() *sqlx.DB { return testenv.OpenPostgres(t, url) }
		},
	}
	for name, pools := range backends {
		for origin, ddl := range tables {
			t.Run(name+"_"+origin, func(t *testing.T) {
				t.Parallel()
				open := pools(t)
				if ddl != "" {
					db := open()
					db.MustExec(ddl)
					if origin != "quota_first" {
						ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status) VALUES (?, ?, ?, ?, ?)`)
						for i := range 50 {
							db.MustExec(ins, fmt.Sprintf("k%d", i), fmt.Sprintf("u%d", i), apikey.Hash(fmt.Sprint(i)), "gold", "active")
						}
					}
				}
				const n = 4
				errs := make(chan error, n)
				for range n {
					s := sqlstore.New(open(), sqlstore.Config{})
					go func() { errs <- s.Bootstrap(context.Background()) }()
				}
				for range n {
					if err := <-errs; err != nil {
						t.Errorf("concurrent Bootstrap: %v", err)
					}
				}
				var blank int
				if err := open().Get(&blank, `SELECT COUNT(*) FROM api_keys WHERE quota_id <> id`); err != nil || blank != 0 {
					t.Errorf("%d rows whose quota_id is not their id (%v), want 0", blank, err)
				}
			})
		}
	}
}

func TestNewTunesPool(t *testing.T) {
	t.Parallel()
	sqlitePath := testenv.SQLitePath(t)
	pgURL := testenv.PostgresURL(t)
	for _, c := range []struct {
		driver, dsn string
		want        int
	}{
		{"sqlite", sqldb.SQLiteDSN(sqlitePath), sqldb.SQLiteConns},
		{"postgres", pgURL, sqldb.PostgresConns},
	} {
		db := sqlx.MustOpen(c.driver, c.dsn)
		t.Cleanup(func() { db.Close() })
		sqlstore.New(db, sqlstore.Config{})
		if got := db.Stats().MaxOpenConnections; got != c.want {
			t.Errorf("%s: New left the pool at %d connections, want %d", c.driver, got, c.want)
		}
		own := sqlx.MustOpen(c.driver, c.dsn)
		t.Cleanup(func() { own.Close() })
		own.SetMaxOpenConns(2)
		sqlstore.New(own, sqlstore.Config{})
		if got := own.Stats().MaxOpenConnections; got != 2 {
			t.Errorf("%s: New changed the application's pool size 2 to %d", c.driver, got)
		}
	}
}

func TestDatabaseHoldsNoRawKey(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		const prefix = "rr_live_"
		var raws, hashes []string
		for i := range 4 {
			raw, k, err := apikey.New(prefix, fmt.Sprintf("user%d", i), "gold", now)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Create(ctx, &k); err != nil {
				t.Fatal(err)
			}
			raws, hashes = append(raws, raw), append(hashes, k.Hash)
		}
		raw, next, _ := apikey.New(prefix, "", "", now)
		if _, err := s.Rotate(ctx, "user0", &next, now, 0); err != nil {
			t.Fatal(err)
		}
		raws, hashes = append(raws, raw), append(hashes, next.Hash)
		if _, err := s.RevokeUser(ctx, "user1", "test", now); err != nil {
			t.Fatal(err)
		}

		rows, err := db.Queryx(`SELECT * FROM api_keys`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var text []string
		for rows.Next() {
			vals, err := rows.SliceScan()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case string:
					text = append(text, v)
				case []byte:
					text = append(text, string(v))
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		all := strings.Join(text, "\x00")
		for _, h := range hashes { // the scan saw the rows
			if !strings.Contains(all, h) {
				t.Fatalf("hash %s not found among %d text values", h, len(text))
			}
		}
		for _, raw := range raws {
			secret := raw[len(prefix) : len(raw)-4] // all but the prefix and the last four
			for _, frag := range []string{raw, secret, secret[:12], secret[len(secret)-12:]} {
				if strings.Contains(all, frag) {
					t.Errorf("the database holds key material %q…", frag[:4])
				}
			}
		}
	})
}

var errRollback = errors.New("roll back")

// TestAtomic: Create, RevokeUser and Rotate called with the context of
// sqldb.Atomic (or Store.Atomic, the same) run in its transaction, together with
// other writes on that context, and commit or roll back with it.
func TestAtomic(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		db.MustExec(`CREATE TABLE events (id TEXT PRIMARY KEY)`)
		_, first, _ := apikey.New("", "alice", "free", now)
		if err := s.Create(ctx, &first); err != nil {
			t.Fatal(err)
		}
		atomics := map[string]func(context.Context, func(context.Context) error) error{
			"sqldb.Atomic": func(ctx context.Context, fn func(context.Context) error) error { return sqldb.Atomic(ctx, db, fn) },
			// An inner Atomic joins the outer transaction: the outer one decides.
			"nested": func(ctx context.Context, fn func(context.Context) error) error {
				return sqldb.Atomic(ctx, db, func(ctx context.Context) error {
					if err := s.Atomic(ctx, func(ctx context.Context) error { return nil }); err != nil {
						return err
					}
					return s.Atomic(ctx, fn)
				})
			},
			"Store.Atomic": s.Atomic,
		}
		for _, name := range []string{"sqldb.Atomic", "nested", "Store.Atomic"} {
			for _, commit := range []bool{false, true} {
				before, err := s.ListByUser(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				var issued, next apikey.Key
				err = atomics[name](ctx, func(ctx context.Context) error {
					revoked, err := s.RevokeUser(ctx, "alice", "upgrade", now)
					if err != nil || len(revoked) != 1 {
						return fmt.Errorf("RevokeUser in tx = %+v, %v", revoked, err)
					}
					_, issued, _ = apikey.New("", "alice", "gold", now)
					if err := s.Create(ctx, &issued); err != nil {
						return fmt.Errorf("Create in tx: %w", err)
					}
					_, next, _ = apikey.New("", "", "", now)
					if old, err := s.Rotate(ctx, "alice", &next, now, 0); err != nil || old.ID != issued.ID {
						return fmt.Errorf("Rotate in tx = %+v, %v", old, err)
					}
					// Inside the transaction its writes are visible ...
					if got, err := s.ByHash(ctx, next.Hash); err != nil || !got.Active() || got.Plan != "gold" || got.QuotaID != issued.ID {
						return fmt.Errorf("in tx, the successor reads %+v, %v", got, err)
					}
					if keys, err := s.ListByUser(ctx, "alice"); err != nil || len(keys) != len(before)+2 {
						return fmt.Errorf("in tx, alice has %d keys (%v), want %d", len(keys), err, len(before)+2)
					}
					if got, err := s.ByID(ctx, first.ID); err != nil || got.Active() {
						return fmt.Errorf("in tx, the key active before reads %+v, %v; want it revoked", got, err)
					}
					// ... and outside it nothing has happened yet.
					if got, err := s.ByID(context.Background(), first.ID); err != nil || !got.Active() {
						return fmt.Errorf("outside the open tx the key reads %+v, %v; want it active", got, err)
					}
					if _, err := s.ByHash(context.Background(), next.Hash); !errors.Is(err, apikey.ErrNotFound) {
						return fmt.Errorf("outside the open tx the successor is visible: %v", err)
					}
					if _, err := sqldb.Q(ctx, db).ExecContext(ctx, db.Rebind(`INSERT INTO events (id) VALUES (?)`), name+fmt.Sprint(commit)); err != nil {
						return err
					}
					if !commit {
						return errRollback
					}
					return nil
				})
				if commit && err != nil || !commit && !errors.Is(err, errRollback) {
					t.Fatalf("%s (commit %v): %v", name, commit, err)
				}
				keys, err := s.ListByUser(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				var events int
				if err := db.Get(&events, db.Rebind(`SELECT COUNT(*) FROM events WHERE id = ?`), name+fmt.Sprint(commit)); err != nil {
					t.Fatal(err)
				}
				if !commit {
					if len(keys) != len(before) {
						t.Errorf("%s: after rollback alice has %d keys, want %d", name, len(keys), len(before))
					}
					if active := activeOf(keys); len(active) != 1 || active[0].ID != first.ID || events != 0 {
						t.Errorf("%s: after rollback alice has %+v active and %d events, want only %s and none", name, active, events, first.ID)
					}
					if _, err := s.ByHash(ctx, issued.Hash); !errors.Is(err, apikey.ErrNotFound) {
						t.Errorf("%s: the key created in a rolled back tx exists: %v", name, err)
					}
					continue
				}
				if active := activeOf(keys); len(active) != 1 || active[0].ID != next.ID || events != 1 {
					t.Errorf("%s: after commit alice has %+v active and %d events, want only %s and 1", name, active, events, next.ID)
				}
				if got, err := s.ByHash(ctx, next.Hash); err != nil || got.QuotaID != issued.ID {
					t.Errorf("%s: after commit the successor reads %+v, %v", name, got, err)
				}
				first = next
			}
		}
	})
}

func activeOf(keys []apikey.Key) []apikey.Key {
	var out []apikey.Key
	for _, k := range keys {
		if k.Active() {
			out = append(out, k)
		}
	}
	return out
}

func TestIsUniqueViolation(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		open(t, db)
		ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, status) VALUES (?, ?, ?, ?)`)
		db.MustExec(ins, "a", "u", "h1", "active")
		exec := func(q string, args ...any) error { _, err := db.Exec(q, args...); return err }
		for _, c := range []struct {
			name string
			err  error
			want bool
		}{
			{"one active key per user", exec(ins, "b", "u", "h2", "active"), true},
			{"duplicate hash", exec(ins, "c", "v", "h1", "active"), true},
			{"duplicate primary key", fmt.Errorf("wrapped: %w", exec(ins, "a", "w", "h3", "revoked")), true},
			{"not null", exec(ins, "d", nil, "h4", "active"), false},
			{"syntax", exec(`SELEC 1`), false},
			{"plain error", errors.New("23505 2067"), false},
			{"nil", nil, false},
		} {
			if got := sqldb.IsUniqueViolation(c.err); got != c.want {
				t.Errorf("%s: IsUniqueViolation(%v) = %v, want %v", c.name, c.err, got, c.want)
			}
		}
	})
}

func TestLookupBeforeBootstrap(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := sqlstore.New(db, sqlstore.Config{})
		_, err := s.ByHash(ctx, apikey.Hash("x"))
		if err == nil || errors.Is(err, apikey.ErrNotFound) || !strings.HasPrefix(err.Error(), "apikey/sqlstore: ") {
			t.Fatalf("ByHash without a table = %v, want a wrapped database error", err)
		}
		// The failed prepare is not kept: once the table exists, lookups work.
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ByHash(ctx, apikey.Hash("x")); !errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("ByHash after Bootstrap = %v, want ErrNotFound", err)
		}
		// The prepared statement survives columns that quota/sqlstore adds later.
		raw, k, _ := apikey.New("", "alice", "gold", now)
		if err := s.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		db.MustExec(`ALTER TABLE api_keys ADD COLUMN calls_used BIGINT NOT NULL DEFAULT 0`)
		if got, err := s.ByHash(ctx, apikey.Hash(raw)); err != nil || got.ID != k.ID {
			t.Errorf("ByHash after another column was added = %+v, %v", got, err)
		}
	})
}
