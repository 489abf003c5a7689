// Package sqlstore is an apikey.Store on the api_keys table of a PostgreSQL (lib/pq)
// or SQLite (modernc.org/sqlite) database, through sqlx.
//
// The package imports no driver: open the database with the driver of your choice
// and pass the handle to New, which bounds an unbounded pool (16 connections on
// PostgreSQL, 4 on SQLite: one writer at a time, readers beside it) unless the
// application set its own. For SQLite (modernc.org/sqlite, driver "sqlite") open
// the DSN that tollgate.SQLiteDSN returns: WAL, a busy timeout, synchronous=NORMAL
// and immediate write transactions.
//
// # Table
//
// The store owns these columns of api_keys: id, user_id, key_hash, key_prefix,
// key_last4, plan, status, quota_id, created_at, last_used_at, revoked_at,
// revoke_reason and expires_at. It neither reads nor writes any other column, so
// the table can also hold a quota's counters (quota/sqlstore adds and keeps its
// own columns on the same rows); its inserts leave other columns to their
// defaults. Bootstrap creates or completes the table, in either order with
// quota/sqlstore's.
//
// The partial unique index api_keys_one_active keeps at most one key per user
// that is active and not expiring (WHERE status = 'active' AND expires_at IS
// NULL); expiring keys (active, with an expires_at) sit beside it. A table from
// before expiring keys has that index without "expires_at IS NULL": Bootstrap
// adds the column and replaces the index under the same name, in its one
// transaction under the schema lock, so that there is no moment without the
// constraint and replicas bootstrapping together migrate once. On PostgreSQL
// that transaction holds an exclusive lock on api_keys (from adding the column)
// while the new index is built, a one-time pause of the key lookups of the
// size of a scan of the table; later Bootstraps find the index as it should be
// and leave it alone. Binaries from before expiring keys keep working on the
// migrated table (the new index is the weaker one), but do not know expires_at:
// they would let an expiring key in after its expiry. Roll them all forward
// before rotating with a grace period.
//
// # Transactions
//
// Every method runs its statements in the transaction that ctx carries on the
// store's database, if any: call them with the context that Store.Atomic hands its
// function, and they commit or roll back together with whatever else runs on that
// context (a quota's Put, a billing event). On PostgreSQL a failed statement
// aborts the transaction, so after an error from a method (ErrActiveExists
// included) return from Atomic's function and let it roll back.
//
// # Changes
//
// The store implements apikey.Changes: after a change commits (at once outside a
// transaction, after Atomic's commit inside one, never when it rolls back) it
// calls this process's watchers with the hashes of the keys it created, revoked
// or retired (Rotate with a grace period, Retire). On PostgreSQL the statement
// that makes the change also runs pg_notify(Config.Channel, hash) for each of
// them, in the same transaction, so that other processes learn of it exactly
// when it commits: apikey/pqnotify
// listens and hands the hashes to an Authenticator's Forget. The payload is the
// key's hash, which is what the database holds anyway. SQLite has no such
// channel: a process that shares the file (an admin command) changes keys
// unseen by the server's watchers, whose cache then serves them for at most its
// FallbackTTL (keep the Authenticator's channel down, see
// apikey.Authenticator.SetChannel).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/internal/keyprep"
	"github.com/releaseradar/tollgate/apikey/internal/watch"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

var (
	_ apikey.Store   = (*Store)(nil)
	_ apikey.Changes = (*Store)(nil)
)

// DefaultChannel is the PostgreSQL notification channel on which the store
// announces changed keys when Config.Channel is empty.
const DefaultChannel = "tollgate_keys"

// Config holds a Store's optional settings. The zero value is usable.
type Config struct {
	// DefaultPlan is the plan that existing rows get when Bootstrap adds the plan
	// column to a table that lacks it (a table from before plans). It must be a
	// plan name of letters, digits, '_', '.' and '-', or empty (the default):
	// Bootstrap returns an error otherwise.
	DefaultPlan string
	// Channel is the PostgreSQL notification channel on which the store
	// announces the hashes of changed keys (see Changes); empty means
	// DefaultChannel. A channel name is at most 63 bytes, without NUL (Bootstrap
	// checks it). Listeners must use the same name. SQLite ignores it.
	Channel string
}

// Store keeps keys in the api_keys table. It is safe for concurrent use; the zero
// value is not usable, call New.
type Store struct {
	db       *sqlx.DB
	cfg      Config
	qs       queries
	watchers watch.List
	// byHash is ByHash's prepared statement, nil until first used outside a
	// transaction.
	byHash atomic.Pointer[sqlx.Stmt]
}

// New returns a store on db, whose pool it sizes as the package doc says. Call
// Bootstrap once at start-up to create or upgrade the table.
func New(db *sqlx.DB, cfg Config) *Store {
	sqldb.Tune(db)
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	return &Store{db: db, cfg: cfg, qs: newQueries(db)}
}

// Watch implements apikey.Changes.
func (s *Store) Watch(fn func(hashes []string)) (stop func()) { return s.watchers.Add(fn) }

// changed calls the watchers with hashes once the transaction ctx carries on the
// store's database commits, or at once outside one.
func (s *Store) changed(ctx context.Context, hashes ...string) {
	if len(hashes) > 0 {
		sqldb.AfterCommit(ctx, s.db, func() { s.watchers.Notify(hashes) })
	}
}

// checkChannel reports whether name can be a PostgreSQL channel (NAMEDATALEN-1).
func checkChannel(name string) error {
	if len(name) > 63 || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("apikey/sqlstore: notification channel %q is not a channel name (1 to 63 bytes, no NUL)", name)
	}
	return nil
}

// Atomic runs fn in a transaction on the store's database and commits it when fn
// returns nil; an error from fn rolls it back and is returned as it is. Store
// methods called with fn's ctx run inside that transaction, and so do those of any
// other tollgate SQL store on the same *sqlx.DB. If ctx already carries a
// transaction on the database, fn runs in that one and its owner commits.
func (s *Store) Atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	return sqldb.Atomic(ctx, s.db, fn)
}

// planName is what Config.DefaultPlan may hold: it is written into the schema.
var planName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Bootstrap creates the api_keys table and its indexes if they are missing, adds
// the store's columns to a table that lacks them (existing rows get the columns'
// defaults; plan gets Config.DefaultPlan), makes key_hash unique if the table does
// not say so yet, replaces an api_keys_one_active index from before expiring keys
// (see the package doc), and sets quota_id to the row's id where it is empty, so
// that an upgraded key keeps spending the quota it always spent (its own row). It
// is idempotent and safe to run from several processes at once.
func (s *Store) Bootstrap(ctx context.Context) error {
	if p := s.cfg.DefaultPlan; p != "" && !planName.MatchString(p) {
		return fmt.Errorf("apikey/sqlstore: bootstrap: default plan %q is not a plan name ([A-Za-z0-9_.-]+)", p)
	}
	if err := checkChannel(s.cfg.Channel); err != nil {
		return err
	}
	// One transaction under the schema lock, so replicas starting together
	// change the schema one after another.
	err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		if err := sqldb.Bootstrap(ctx, s.db, table(s.cfg.DefaultPlan)); err != nil {
			return err
		}
		q := sqldb.Q(ctx, s.db)
		uniqueHash := `SELECT COUNT(*) FROM pragma_index_list('api_keys') AS l
			WHERE l."unique" = 1 AND l.partial = 0
			AND (SELECT COUNT(*) FROM pragma_index_info(l.name)) = 1
			AND (SELECT name FROM pragma_index_info(l.name)) = 'key_hash'`
		if sqldb.IsPostgres(s.db) {
			uniqueHash = `SELECT COUNT(*) FROM pg_index i
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				WHERE i.indrelid = 'api_keys'::regclass AND i.indisunique AND i.indnatts = 1
				AND i.indpred IS NULL AND a.attname = 'key_hash'`
		}
		// A table that quota/sqlstore created first got key_hash from Bootstrap as
		// a plain column; one that apikey created says UNIQUE already.
		var n int
		if err := q.GetContext(ctx, &n, uniqueHash); err != nil {
			return fmt.Errorf("key_hash indexes: %w", err)
		}
		if n == 0 {
			if _, err := q.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS api_keys_hash ON api_keys (key_hash)`); err != nil {
				return fmt.Errorf("key_hash index: %w", err)
			}
		}
		if err := s.oneActiveIndex(ctx, q); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `UPDATE api_keys SET quota_id = id WHERE quota_id = ''`); err != nil {
			return fmt.Errorf("backfill quota_id: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apikey/sqlstore: bootstrap: %w", err)
	}
	return nil
}

// oneActive is the index that keeps at most one key per user that is active and
// not expiring.
const (
	oneActiveName = "api_keys_one_active"
	oneActive     = `CREATE UNIQUE INDEX ` + oneActiveName + ` ON api_keys (user_id) WHERE status = 'active' AND expires_at IS NULL`
)

// oneActiveIndex creates api_keys_one_active if it is missing, and replaces it
// if it predates expiring keys (its predicate does not name expires_at), in the
// transaction ctx carries, under the schema lock Bootstrap holds: a concurrent
// Bootstrap waits, then finds the index done. The drop and the create commit
// together, so the table is never without the constraint; the new predicate is
// weaker than the old, so the rows that satisfied one satisfy the other.
func (s *Store) oneActiveIndex(ctx context.Context, q sqldb.Querier) error {
	def := `SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_keys' AND name = '` + oneActiveName + `'`
	if sqldb.IsPostgres(s.db) {
		def = `SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
			JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = 'api_keys'::regclass AND c.relname = '` + oneActiveName + `'`
	}
	var defs []string
	if err := q.SelectContext(ctx, &defs, def); err != nil {
		return fmt.Errorf("%s: %w", oneActiveName, err)
	}
	switch {
	case len(defs) > 0 && strings.Contains(strings.ToLower(defs[0]), "expires_at"):
		return nil // as it should be
	case len(defs) > 0:
		if _, err := q.ExecContext(ctx, `DROP INDEX `+oneActiveName); err != nil {
			return fmt.Errorf("replace %s: %w", oneActiveName, err)
		}
	}
	if _, err := q.ExecContext(ctx, oneActive); err != nil {
		return fmt.Errorf("create %s: %w", oneActiveName, err)
	}
	return nil
}

// table is the api_keys table as the store needs it, its plan column defaulting
// to plan (checked by Bootstrap: it is written into the statements). Its index
// api_keys_one_active is Bootstrap's to create (oneActiveIndex).
func table(plan string) sqldb.Table {
	planDef := "TEXT NOT NULL DEFAULT '" + plan + "'"
	return sqldb.Table{
		Name: "api_keys",
		Create: `CREATE TABLE IF NOT EXISTS api_keys (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	key_prefix TEXT NOT NULL DEFAULT '',
	key_last4 TEXT NOT NULL DEFAULT '',
	plan ` + planDef + `,
	status TEXT NOT NULL DEFAULT 'active',
	quota_id TEXT NOT NULL DEFAULT '',
	created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	last_used_at TIMESTAMP NULL,
	revoked_at TIMESTAMP NULL,
	revoke_reason TEXT NOT NULL DEFAULT '',
	expires_at TIMESTAMP NULL
)`,
		// Every column but id, for a table from before a column existed or one
		// that quota/sqlstore created with its own columns only. NOT NULL columns
		// need a default to be added; Bootstrap makes key_hash unique.
		Columns: []sqldb.Column{
			{Name: "user_id", Def: "TEXT NOT NULL DEFAULT ''"},
			{Name: "key_hash", Def: "TEXT NOT NULL DEFAULT ''"},
			{Name: "key_prefix", Def: "TEXT NOT NULL DEFAULT ''"},
			{Name: "key_last4", Def: "TEXT NOT NULL DEFAULT ''"},
			{Name: "plan", Def: planDef},
			{Name: "status", Def: "TEXT NOT NULL DEFAULT 'active'"},
			{Name: "quota_id", Def: "TEXT NOT NULL DEFAULT ''"},
			{
				Name:           "created_at",
				Def:            "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
				SQLiteDef:      "TIMESTAMP NOT NULL DEFAULT '1970-01-01 00:00:00'",
				SQLiteBackfill: "CURRENT_TIMESTAMP",
			},
			{Name: "last_used_at", Def: "TIMESTAMP NULL"},
			{Name: "revoked_at", Def: "TIMESTAMP NULL"},
			{Name: "revoke_reason", Def: "TEXT NOT NULL DEFAULT ''"},
			{Name: "expires_at", Def: "TIMESTAMP NULL"},
		},
		Indexes: []string{
			`CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id)`,
		},
	}
}

// maxRotateAttempts bounds how often Rotate looks again for an active key that a
// concurrent rotation replaced under it (see Store.Rotate).
const maxRotateAttempts = 64

// errContention is returned when Rotate lost maxRotateAttempts races in a row.
var errContention = errors.New("apikey/sqlstore: rotate: too many concurrent rotations for this user, try again")

// columns lists the api_keys columns the store owns, in the order of row's fields.
const columns = `id, user_id, key_hash, key_prefix, key_last4, plan, status, quota_id,
	created_at, last_used_at, revoked_at, revoke_reason, expires_at`

// row is an api_keys row as both databases return it.
type row struct {
	ID           string     `db:"id"`
	UserID       string     `db:"user_id"`
	Hash         string     `db:"key_hash"`
	KeyPrefix    string     `db:"key_prefix"`
	Last4        string     `db:"key_last4"`
	Plan         string     `db:"plan"`
	Status       string     `db:"status"`
	QuotaID      string     `db:"quota_id"`
	CreatedAt    sqldb.Time `db:"created_at"`
	LastUsedAt   sqldb.Time `db:"last_used_at"`
	RevokedAt    sqldb.Time `db:"revoked_at"`
	RevokeReason string     `db:"revoke_reason"`
	ExpiresAt    sqldb.Time `db:"expires_at"`
}

// key returns r as a Key. A row with no quota_id (written by a version before
// quota_id, after the last Bootstrap) spends its own quota, as it always did.
func (r row) key() apikey.Key {
	quota := r.QuotaID
	if quota == "" {
		quota = r.ID
	}
	return apikey.Key{
		ID:           r.ID,
		UserID:       r.UserID,
		Hash:         r.Hash,
		KeyPrefix:    r.KeyPrefix,
		Last4:        r.Last4,
		Plan:         r.Plan,
		Status:       apikey.Status(r.Status),
		QuotaID:      quota,
		CreatedAt:    r.CreatedAt.Time,
		LastUsedAt:   r.LastUsedAt.Time,
		RevokedAt:    r.RevokedAt.Time,
		RevokeReason: r.RevokeReason,
		ExpiresAt:    r.ExpiresAt.Time,
	}
}

// queries are the store's statements, rebound once for the database's placeholders.
// On PostgreSQL the writes that change a key (insert, revoke, revokeUser,
// rotateRevoke, rotateRetire, retire) take the notification channel as their
// last argument and notify it of each row's hash in the same statement, so that
// the notification commits with the change even outside a transaction.
type queries struct {
	insert, byHash, byID, listByUser, exists string
	revoke, revokeUser, touch                string
	// rotateRevoke and rotateRetire revoke or retire the user's current key
	// (active, not expiring); nCurrent counts those.
	rotateRevoke, rotateRetire, nCurrent string
	retire                               string
	notifies                             bool
}

// current is the condition on a user's row that makes it the user's current
// key: active and not expiring (the rows api_keys_one_active covers).
const current = `user_id = ? AND status = 'active' AND expires_at IS NULL`

func newQueries(db *sqlx.DB) queries {
	insert := `INSERT INTO api_keys (` + columns + `)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	revoke := `UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE id = ? AND status = 'active' RETURNING key_hash`
	revokeUser := `UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE user_id = ? AND status = 'active' RETURNING ` + columns
	rotateRevoke := `UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE ` + current + ` RETURNING ` + columns
	rotateRetire := `UPDATE api_keys SET expires_at = ?
			WHERE ` + current + ` RETURNING ` + columns
	// Only a row that the call changes: a Retire that changes nothing
	// announces nothing. The expiry is never moved later (timestamps compare
	// as such on PostgreSQL, and as text of one fixed UTC layout on SQLite).
	retire := `UPDATE api_keys SET plan = ?, quota_id = ?,
				expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ? THEN expires_at ELSE ? END
			WHERE id = ? AND status = 'active'
				AND (plan <> ? OR quota_id <> ? OR expires_at IS NULL OR expires_at > ?)
			RETURNING key_hash`
	pg := sqldb.IsPostgres(db)
	if pg {
		// A function in FROM runs once per row of r; a SELECT that names no
		// column of it still runs it.
		insert = `WITH r AS (` + insert + ` RETURNING key_hash)
			SELECT r.key_hash FROM r, pg_notify(?, r.key_hash)`
		revoke = `WITH r AS (` + revoke + `)
			SELECT r.key_hash FROM r, pg_notify(?, r.key_hash)`
		retire = `WITH r AS (` + retire + `)
			SELECT r.key_hash FROM r, pg_notify(?, r.key_hash)`
		withColumns := func(q string) string {
			return `WITH r AS (` + q + `)
			SELECT ` + prefixed("r.", columns) + ` FROM r, pg_notify(?, r.key_hash)`
		}
		revokeUser = withColumns(revokeUser)
		rotateRevoke = withColumns(rotateRevoke)
		rotateRetire = withColumns(rotateRetire)
	}
	return queries{
		insert:       db.Rebind(insert),
		byHash:       db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE key_hash = ?`),
		byID:         db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE id = ?`),
		listByUser:   db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC`),
		exists:       db.Rebind(`SELECT COUNT(*) FROM api_keys WHERE id = ?`),
		revoke:       db.Rebind(revoke),
		revokeUser:   db.Rebind(revokeUser),
		rotateRevoke: db.Rebind(rotateRevoke),
		rotateRetire: db.Rebind(rotateRetire),
		nCurrent:     db.Rebind(`SELECT COUNT(*) FROM api_keys WHERE ` + current),
		retire:       db.Rebind(retire),
		touch: db.Rebind(`UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`),
		notifies: pg,
	}
}

// prefixed returns the comma-separated list cols with each name prefixed.
func prefixed(prefix, cols string) string {
	names := strings.Split(cols, ",")
	for i, n := range names {
		names[i] = prefix + strings.TrimSpace(n)
	}
	return strings.Join(names, ", ")
}

// args appends the notification channel to a changing statement's arguments on
// PostgreSQL.
func (s *Store) args(args ...any) []any {
	if s.qs.notifies {
		return append(args, s.cfg.Channel)
	}
	return args
}

// Create implements apikey.Store.
func (s *Store) Create(ctx context.Context, k *apikey.Key) error {
	if err := keyprep.ForCreate(k); err != nil {
		return fmt.Errorf("apikey/sqlstore: create: %w", err)
	}
	if err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error { return s.insert(ctx, q, k) }); err != nil {
		return err
	}
	s.changed(ctx, k.Hash)
	return nil
}

// insert inserts k (and, on PostgreSQL, notifies its hash); the caller tells the
// watchers.
func (s *Store) insert(ctx context.Context, q sqldb.Querier, k *apikey.Key) error {
	_, err := q.ExecContext(ctx, s.qs.insert, s.args(
		k.ID, k.UserID, k.Hash, k.KeyPrefix, k.Last4, k.Plan, string(k.Status), k.QuotaID,
		sqldb.T(k.CreatedAt), sqldb.T(k.LastUsedAt), sqldb.T(k.RevokedAt), k.RevokeReason,
		sqldb.T(k.ExpiresAt))...)
	switch {
	case err == nil:
		return nil
	case activeConflict(err):
		return apikey.ErrActiveExists
	case sqldb.IsUniqueViolation(err):
		return fmt.Errorf("apikey/sqlstore: create: a key with that ID or hash exists: %w", err)
	}
	return fmt.Errorf("apikey/sqlstore: create: %w", err)
}

// activeConflict reports whether err is the index api_keys_one_active refusing a
// second active key for a user. PostgreSQL names the index in its message; SQLite
// names the indexed column, and user_id carries no other unique index.
func activeConflict(err error) bool {
	if !sqldb.IsUniqueViolation(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "api_keys_one_active") || strings.Contains(msg, "api_keys.user_id")
}

// ByHash implements apikey.Store. It runs on every authenticated request, so
// outside a transaction its statement is prepared once and reused: on PostgreSQL
// that saves a round trip and a plan per call.
func (s *Store) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	var r row
	if tx, ok := sqldb.InTx(ctx, s.db); ok {
		return result("by hash", r, tx.GetContext(ctx, &r, s.qs.byHash, hash))
	}
	st := s.byHash.Load()
	if st == nil {
		var err error
		if st, err = s.db.PreparexContext(ctx, s.qs.byHash); err != nil {
			return apikey.Key{}, fmt.Errorf("apikey/sqlstore: by hash: %w", err)
		}
		if !s.byHash.CompareAndSwap(nil, st) { // another call prepared it first
			st.Close()
			st = s.byHash.Load()
		}
	}
	return result("by hash", r, st.GetContext(ctx, &r, hash))
}

// ByID implements apikey.Store.
func (s *Store) ByID(ctx context.Context, id string) (apikey.Key, error) {
	var r row
	err := sqldb.Q(ctx, s.db).GetContext(ctx, &r, s.qs.byID, id)
	return result("by id", r, err)
}

// result turns the outcome of a one-row query into ByHash's and ByID's answer.
func result(op string, r row, err error) (apikey.Key, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return apikey.Key{}, apikey.ErrNotFound
	}
	if err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/sqlstore: %s: %w", op, err)
	}
	return r.key(), nil
}

// ListByUser implements apikey.Store.
func (s *Store) ListByUser(ctx context.Context, userID string) ([]apikey.Key, error) {
	var rows []row
	if err := sqldb.Q(ctx, s.db).SelectContext(ctx, &rows, s.qs.listByUser, userID); err != nil {
		return nil, fmt.Errorf("apikey/sqlstore: list: %w", err)
	}
	return keys(rows), nil
}

// keys returns rows as keys, never nil.
func keys(rows []row) []apikey.Key {
	out := make([]apikey.Key, len(rows))
	for i, r := range rows {
		out[i] = r.key()
	}
	return out
}

// change runs stmt, which returns the hashes of the keys it changed, into
// hashes. When it changed nothing it tells a key left as it was (nil) from no key
// of that ID (apikey.ErrNotFound).
func (s *Store) change(ctx context.Context, q sqldb.Querier, hashes *[]string, id, stmt string, args ...any) error {
	if err := q.SelectContext(ctx, hashes, stmt, s.args(args...)...); err != nil {
		return err
	}
	if len(*hashes) > 0 {
		return nil
	}
	var n int
	if err := q.GetContext(ctx, &n, s.qs.exists, id); err != nil {
		return err
	}
	if n == 0 {
		return apikey.ErrNotFound
	}
	return nil
}

// Revoke implements apikey.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) error {
	var hashes []string
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		return s.change(ctx, q, &hashes, id, s.qs.revoke, sqldb.T(now), reason, id) // nil when already revoked
	})
	if err != nil && !errors.Is(err, apikey.ErrNotFound) {
		return fmt.Errorf("apikey/sqlstore: revoke: %w", err)
	}
	if err == nil {
		s.changed(ctx, hashes...)
	}
	return err
}

// Touch implements apikey.Store: one UPDATE a key, all in one transaction (the one
// ctx carries, if any).
func (s *Store) Touch(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		for id, at := range used {
			t := sqldb.T(at)
			if _, err := q.ExecContext(ctx, s.qs.touch, t, id, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apikey/sqlstore: touch: %w", err)
	}
	return nil
}

// RevokeUser implements apikey.Store. It returns the revoked keys newest first (at
// most one, unless rows were written around the one-active index).
func (s *Store) RevokeUser(ctx context.Context, userID, reason string, now time.Time) ([]apikey.Key, error) {
	var rows []row
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		return q.SelectContext(ctx, &rows, s.qs.revokeUser, s.args(sqldb.T(now), reason, userID)...)
	})
	if err != nil {
		return nil, fmt.Errorf("apikey/sqlstore: revoke user: %w", err)
	}
	out := keys(rows)
	hashes := make([]string, len(out))
	for i, k := range out {
		hashes[i] = k.Hash
	}
	s.changed(ctx, hashes...)
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Retire implements apikey.Store, in one statement.
func (s *Store) Retire(ctx context.Context, id, plan, quotaID string, expiresAt time.Time) error {
	if err := keyprep.CheckRetire(quotaID, expiresAt); err != nil {
		return fmt.Errorf("apikey/sqlstore: %w", err)
	}
	at := sqldb.T(expiresAt)
	var hashes []string
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		// nil when revoked, or retired so already
		return s.change(ctx, q, &hashes, id, s.qs.retire, plan, quotaID, at, at, id, plan, quotaID, at)
	})
	if err != nil && !errors.Is(err, apikey.ErrNotFound) {
		return fmt.Errorf("apikey/sqlstore: retire: %w", err)
	}
	if err == nil {
		s.changed(ctx, hashes...)
	}
	return err
}

// Rotate implements apikey.Store: in one transaction (the one ctx carries, or its
// own) it revokes the user's current key (reason "rotated"), or with grace > 0
// sets its expires_at, and inserts next, which keeps the old key's plan and
// quota_id. It never touches a quota's counters: the successor spends the same
// quota because it names the same one.
//
// Concurrent rotations for one user run one after another and all succeed, each
// replacing the key the previous one created, so exactly one key ends up current.
// On SQLite the write lock orders them. On PostgreSQL (at READ COMMITTED, the
// default) a rotation that waited for the row lock finds the key it waited for
// revoked or expiring and its successor invisible to its statement; it then
// looks again with a fresh statement, up to 64 times, and returns ErrNoActiveKey
// only when the user really has no current key.
func (s *Store) Rotate(ctx context.Context, userID string, next *apikey.Key, now time.Time, grace time.Duration) (apikey.Key, error) {
	// Checked before any statement, so that a caller's transaction stays usable.
	if err := keyprep.CheckNext(next, now, grace); err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
	}
	var old apikey.Key
	var inner error
	err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		old, inner = s.rotate(ctx, sqldb.Q(ctx, s.db), userID, next, now, grace)
		if inner == nil {
			s.changed(ctx, old.Hash, next.Hash)
		}
		return inner
	})
	switch {
	case err == nil:
		return old, nil
	case err == inner:
		return apikey.Key{}, err
	}
	return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err) // begin or commit
}

func (s *Store) rotate(ctx context.Context, q sqldb.Querier, userID string, next *apikey.Key, now time.Time, grace time.Duration) (apikey.Key, error) {
	query, args := s.qs.rotateRevoke, s.args(sqldb.T(now), keyprep.RotateReason, userID)
	if grace > 0 {
		query, args = s.qs.rotateRetire, s.args(sqldb.T(keyprep.Expiry(now, grace)), userID)
	}
	var r row
	for attempt := 1; ; attempt++ {
		err := q.GetContext(ctx, &r, query, args...)
		if err == nil {
			break
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
		}
		var n int
		if err := q.GetContext(ctx, &n, s.qs.nCurrent, userID); err != nil {
			return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
		}
		if n == 0 {
			return apikey.Key{}, apikey.ErrNoActiveKey
		}
		if attempt == maxRotateAttempts {
			return apikey.Key{}, errContention
		}
	}
	old := r.key()
	keyprep.Successor(next, old, now)
	if err := s.insert(ctx, q, next); err != nil {
		return apikey.Key{}, err
	}
	return old, nil
}
