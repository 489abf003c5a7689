package sqlstore_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/apikey/storetest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// open returns a bootstrapped store on db.
func open(t testing.TB, db *sqlx.DB) *sqlstore.Store {
	t.Helper()
	s := sqlstore.New(db, sqlstore.Config{})
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	return s
}

// tables are the api_keys tables a store may find before its first Bootstrap, by
// the DDL that made them: none, the original service's, tollgate's before quotas
// owned their columns (quota columns included), one quota/sqlstore created with
// its own columns only, and apikey's own from before expiring keys (no
// expires_at, and the one-active index without it).
var tables = map[string]string{
	"fresh": "",
	"legacy": `CREATE TABLE api_keys (
		id TEXT PRIMARY KEY,
		user_id TEXT NOT NULL,
		key_hash TEXT NOT NULL UNIQUE,
		plan TEXT NOT NULL,
		status TEXT NOT NULL,
		created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
	"shared": sharedTable,
	"quota_first": `CREATE TABLE api_keys (
		id TEXT PRIMARY KEY,
		monthly_call_limit BIGINT NOT NULL DEFAULT 0,
		calls_used BIGINT NOT NULL DEFAULT 0,
		cycle_start TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
		quota_granted BIGINT NOT NULL DEFAULT 0)`,
	"before_grace": beforeGraceTable,
}

// beforeGraceTable is api_keys as apikey/sqlstore created it before expiring
// keys, with its indexes: api_keys_one_active allows one active key per user,
// expiring or not.
const beforeGraceTable = `CREATE TABLE api_keys (
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
);
CREATE UNIQUE INDEX api_keys_one_active ON api_keys (user_id) WHERE status = 'active';
CREATE INDEX api_keys_user ON api_keys (user_id)`

// sharedTable is api_keys as tollgate created it while apikey and quota shared
// one table definition: the quota columns are quota/sqlstore's, not apikey's.
const sharedTable = `CREATE TABLE api_keys (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	key_prefix TEXT NOT NULL DEFAULT '',
	key_last4 TEXT NOT NULL DEFAULT '',
	plan TEXT NOT NULL DEFAULT 'pro',
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

// TestConformance runs the suite on both databases, on a table Bootstrap created
// and on each kind of table it upgraded.
func TestConformance(t *testing.T) {
	t.Parallel()
	backends := map[string]func(t testing.TB) *sqlx.DB{
		"sqlite":   func(t testing.TB) *sqlx.DB { return testenv.SQLite(t) },
		"postgres": func(t testing.TB) *sqlx.DB { return testenv.Postgres(t) },
	}
	for backend, newDB := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			for origin, ddl := range tables {
				t.Run(origin, func(t *testing.T) {
					t.Parallel()
					storetest.Run(t, func(t *testing.T) apikey.Store {
						db := newDB(t)
						if ddl != "" {
							db.MustExec(ddl)
						}
						return open(t, db)
					})
				})
			}
		})
	}
}

// TestChanges runs the Changes suite on both databases.
func TestChanges(t *testing.T) {
	t.Parallel()
	for backend, newDB := range map[string]func(t testing.TB) *sqlx.DB{
		"sqlite":   func(t testing.TB) *sqlx.DB { return testenv.SQLite(t) },
		"postgres": func(t testing.TB) *sqlx.DB { return testenv.Postgres(t) },
	} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			storetest.RunChanges(t, func(t *testing.T) apikey.Store { return open(t, newDB(t)) })
		})
	}
}
