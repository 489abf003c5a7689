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

func TestBootstrapUpgradesLegacyTable(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		// The table as the original service created it, before quotas.
		db.MustExec(`CREATE TABLE api_keys (
			id TEXT PRIMARY KEY,
			user_id TEXT NOT NULL,
			key_hash TEXT NOT NULL UNIQUE,
			plan TEXT NOT NULL,
			status TEXT NOT NULL,
			created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`)
		legacy := []struct{ id, user, raw, plan, status string }{
			{"legacy1", "alice", "rr_live_legacyAAAA", "pro", "active"},
			{"legacy2", "alice", "rr_live_legacyBBBB", "pro", "revoked"},
			{"legacy3", "bob", "rr_live_legacyCCCC", "team", "active"},
		}
		ins := db.Rebind(`INSERT INTO api_keys (id, user_id, key_hash, plan, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
		for _, l := range legacy {
			db.MustExec(ins, l.id, l.user, apikey.Hash(l.raw), l.plan, l.status, "2024-01-02 03:04:05")
		}

		s := sqlstore.New(db)
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
			if k.MonthlyCallLimit != 10000 || k.CallsUsed != 0 {
				t.Errorf("row %s: limit %d used %d, want the defaults 10000 and 0", l.id, k.MonthlyCallLimit, k.CallsUsed)
			}
			if age := time.Since(k.CycleStart); k.CycleStart.IsZero() || age < -24*time.Hour || age > 24*time.Hour {
				t.Errorf("row %s: cycle_start %v, want the time of the upgrade", l.id, k.CycleStart)
			}
			if want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC); !k.CreatedAt.Equal(want) {
				t.Errorf("row %s: created_at %v, want %v", l.id, k.CreatedAt, want)
			}
		}
		// The upgraded table enforces one active key per user ...
		_, k, _ := apikey.New("alice", "pro", 10000, now)
		if err := s.Create(ctx, &k); !errors.Is(err, apikey.ErrActiveExists) {
			t.Errorf("Create for alice, who has a legacy active key = %v, want ErrActiveExists", err)
		}
		// ... and legacy keys rotate like any other.
		_, next, _ := apikey.New("", "", 0, now)
		old, err := s.Rotate(ctx, "bob", &next, now)
		if err != nil || old.ID != "legacy3" || next.Plan != "team" || next.MonthlyCallLimit != 10000 {
			t.Errorf("Rotate(bob) = %+v, %v; successor %+v", old, err, next)
		}
	})
}

func TestOneActiveIndexExists(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		open(t, db)
		q := `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'api_keys_one_active'`
		if sqldb.IsPostgres(db) {
			q = `SELECT indexdef FROM pg_indexes WHERE indexname = 'api_keys_one_active' AND schemaname = current_schema()`
		}
		var def string
		if err := db.Get(&def, q); err != nil {
			t.Fatalf("reading the index definition: %v", err)
		}
		for _, want := range []string{"UNIQUE", "(user_id)", "WHERE", "status", "'active'"} {
			if !strings.Contains(def, want) {
				t.Errorf("index definition %q lacks %q", def, want)
			}
		}
	})
}

func TestDatabaseHoldsNoRawKey(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		var raws, hashes []string
		for i := range 4 {
			raw, k, err := apikey.New(fmt.Sprintf("user%d", i), "pro", 1000, now)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Create(ctx, &k); err != nil {
				t.Fatal(err)
			}
			raws, hashes = append(raws, raw), append(hashes, k.Hash)
		}
		raw, next, _ := apikey.New("", "", 0, now)
		if _, err := s.Rotate(ctx, "user0", &next, now); err != nil {
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
			secret := raw[len(apikey.Prefix) : len(raw)-4] // all but the prefix and the last four
			for _, frag := range []string{raw, secret, secret[:12], secret[len(secret)-12:]} {
				if strings.Contains(all, frag) {
					t.Errorf("the database holds key material %q…", frag[:4])
				}
			}
		}
	})
}

func TestWithTx(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		_, first, _ := apikey.New("alice", "pro", 1000, now)
		if err := s.Create(ctx, &first); err != nil {
			t.Fatal(err)
		}
		for _, commit := range []bool{false, true} {
			tx, err := db.BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts := s.WithTx(tx)
			if n, err := ts.RevokeUser(ctx, "alice", "upgrade", now); n != 1 || err != nil {
				t.Fatalf("RevokeUser in tx = %d, %v", n, err)
			}
			_, issued, _ := apikey.New("alice", "team", 50000, now)
			if err := ts.Create(ctx, &issued); err != nil {
				t.Fatalf("Create in tx: %v", err)
			}
			_, next, _ := apikey.New("", "", 0, now)
			if old, err := ts.Rotate(ctx, "alice", &next, now); err != nil || old.ID != issued.ID {
				t.Fatalf("Rotate in tx = %+v, %v", old, err)
			}
			if got, err := ts.ByHash(ctx, next.Hash); err != nil || !got.Active() || got.Plan != "team" {
				t.Errorf("in tx, the successor reads %+v, %v", got, err)
			}
			// Outside the transaction nothing has happened yet.
			if got, err := s.ByID(ctx, first.ID); err != nil || !got.Active() {
				t.Errorf("outside the open tx the first key reads %+v, %v; want it active", got, err)
			}
			if _, err := s.ByHash(ctx, next.Hash); !errors.Is(err, apikey.ErrNotFound) {
				t.Errorf("outside the open tx the successor is visible: %v", err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			keys, err := s.ListByUser(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if !commit {
				if len(keys) != 1 || !keys[0].Active() {
					t.Errorf("after rollback alice has %+v, want only the first key, active", keys)
				}
				continue
			}
			if len(keys) != 3 || activeCount(keys) != 1 {
				t.Errorf("after commit alice has %+v, want 3 keys, 1 active", keys)
			}
			if got, err := s.ByHash(ctx, next.Hash); err != nil || !got.Active() || got.MonthlyCallLimit != 50000 {
				t.Errorf("after commit the successor reads %+v, %v", got, err)
			}
		}
	})
}

func activeCount(keys []apikey.Key) int {
	n := 0
	for _, k := range keys {
		if k.Active() {
			n++
		}
	}
	return n
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
		s := sqlstore.New(db)
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
	})
}
