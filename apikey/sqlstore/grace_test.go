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

// oneActiveIdentity returns what tells one build of api_keys_one_active from
// another: its OID on PostgreSQL, its definition and root page on SQLite.
func oneActiveIdentity(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	q := `SELECT sql || ' @' || rootpage FROM sqlite_master WHERE type = 'index' AND name = 'api_keys_one_active'`
	if sqldb.IsPostgres(db) {
		q = `SELECT 'api_keys_one_active'::regclass::oid::text`
	}
	var id string
	if err := db.Get(&id, q); err != nil {
		t.Fatalf("api_keys_one_active: %v", err)
	}
	return id
}

// uniqueUserIndexes counts the unique indexes on api_keys (user_id).
func uniqueUserIndexes(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	q := `SELECT COUNT(*) FROM pragma_index_list('api_keys') AS l
		WHERE l."unique" = 1 AND (SELECT name FROM pragma_index_info(l.name)) = 'user_id'`
	if sqldb.IsPostgres(db) {
		q = `SELECT COUNT(*) FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = 'api_keys'::regclass AND i.indisunique AND i.indnatts = 1 AND a.attname = 'user_id'`
	}
	var n int
	if err := db.Get(&n, q); err != nil {
		t.Fatal(err)
	}
	return n
}

// A live table from before expiring keys, with keys in it, is migrated by several
// replicas bootstrapping at once: the one-active index is replaced (under its
// name) by one that leaves expiring keys out, once; the rows are kept, and the
// rule still holds for keys that do not expire. Later Bootstraps leave the index
// alone.
func TestBootstrapMigratesOneActiveIndex(t *testing.T) {
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
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			open := pools(t)
			db := open()
			db.MustExec(beforeGraceTable)
			ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status, quota_id) VALUES (?, ?, ?, 'gold', ?, ?)`)
			for i := range 20 {
				db.MustExec(ins, fmt.Sprintf("k%d", i), fmt.Sprintf("u%d", i), apikey.Hash(fmt.Sprint(i)), "active", fmt.Sprintf("k%d", i))
				db.MustExec(ins, fmt.Sprintf("r%d", i), fmt.Sprintf("u%d", i), apikey.Hash(fmt.Sprint("r", i)), "revoked", fmt.Sprintf("k%d", i))
			}
			// The old index refuses a second active row, expiring or not.
			if before := indexDef(t, db, "api_keys_one_active"); strings.Contains(before, "expires_at") {
				t.Fatalf("the old index already names expires_at: %s", before)
			}

			const n = 4
			errs := make(chan error, n)
			for range n {
				s := sqlstore.New(open(), sqlstore.Config{})
				go func() { errs <- s.Bootstrap(ctx) }()
			}
			for range n {
				if err := <-errs; err != nil {
					t.Fatalf("concurrent Bootstrap: %v", err)
				}
			}
			if def := indexDef(t, db, "api_keys_one_active"); !strings.Contains(def, "expires_at IS NULL") {
				t.Fatalf("after Bootstrap api_keys_one_active is %q, want it to leave expiring keys out", def)
			}
			if n := uniqueUserIndexes(t, db); n != 1 {
				t.Errorf("%d unique indexes on user_id after Bootstrap, want 1", n)
			}
			id := oneActiveIdentity(t, db)
			s := open()
			store := sqlstore.New(s, sqlstore.Config{})
			if err := store.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
			if again := oneActiveIdentity(t, db); again != id {
				t.Errorf("a later Bootstrap rebuilt the index: %s, then %s", id, again)
			}

			// Every row is kept, none expiring.
			var rows, expiring int
			if err := db.Get(&rows, `SELECT COUNT(*) FROM api_keys`); err != nil || rows != 40 {
				t.Errorf("%d rows after the migration (%v), want 40", rows, err)
			}
			if err := db.Get(&expiring, `SELECT COUNT(*) FROM api_keys WHERE expires_at IS NOT NULL`); err != nil || expiring != 0 {
				t.Errorf("%d expiring rows after the migration (%v), want 0", expiring, err)
			}
			// The migrated table takes expiring keys beside the current one, and
			// still refuses a second current key.
			_, next, _ := apikey.New("", "", "", now)
			old, err := store.Rotate(ctx, "u3", &next, now, time.Hour)
			if err != nil || old.ID != "k3" || !old.Expiring() || next.QuotaID != "k3" {
				t.Fatalf("Rotate with grace on a migrated row = %+v, %v; successor %+v", old, err, next)
			}
			_, second, _ := apikey.New("", "u3", "gold", now)
			if err := store.Create(ctx, &second); !errors.Is(err, apikey.ErrActiveExists) {
				t.Errorf("a second current key on the migrated table: %v, want ErrActiveExists", err)
			}
			// Behind the store's back too: the index, not the store, refuses.
			raw := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, status) VALUES (?, 'u5', ?, 'active')`)
			if _, err := db.Exec(raw, "x5", apikey.Hash("x5")); !sqldb.IsUniqueViolation(err) {
				t.Errorf("a second current row for u5: %v, want a unique violation", err)
			}
			exp := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, status, expires_at) VALUES (?, 'u5', ?, 'active', ?)`)
			if _, err := db.Exec(exp, "e5", apikey.Hash("e5"), sqldb.T(now.Add(time.Hour))); err != nil {
				t.Errorf("an expiring row beside u5's current one: %v", err)
			}
		})
	}
}

// A Rotate with grace inside a caller's transaction that rolls back leaves the
// old key as it was: not expiring, and still the user's current key.
func TestRotateWithGraceRollsBack(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		_, k, _ := apikey.New("", "alice", "gold", now)
		if err := s.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		errAbort := errors.New("abort")
		err := s.Atomic(ctx, func(ctx context.Context) error {
			_, next, _ := apikey.New("", "", "", now)
			if _, err := s.Rotate(ctx, "alice", &next, now, time.Hour); err != nil {
				return err
			}
			if err := s.Retire(ctx, next.ID, "platinum", "q", now.Add(time.Minute)); err != nil {
				return err
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("Atomic = %v", err)
		}
		got, err := s.ByID(ctx, k.ID)
		if err != nil || got != k {
			t.Errorf("after the rollback the key is %+v, %v; want %+v", got, err, k)
		}
		if keys, _ := s.ListByUser(ctx, "alice"); len(keys) != 1 {
			t.Errorf("alice has %d keys after the rollback, want 1", len(keys))
		}
	})
}
