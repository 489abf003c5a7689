// Package sqlstore is an apikey.Store on the api_keys table of a PostgreSQL (lib/pq)
// or SQLite (modernc.org/sqlite) database, through sqlx.
//
// The package imports no driver: open the database with the driver of your choice
// and pass the handle to New. For SQLite (modernc.org/sqlite) use WAL, a busy timeout
// and immediate write transactions, as in
//
//	file:app.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/internal/keyprep"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

var _ apikey.Store = (*Store)(nil)

// maxRotateAttempts bounds how often Rotate looks again for an active key that a
// concurrent rotation replaced under it (see Store.Rotate).
const maxRotateAttempts = 64

// errContention is returned when Rotate lost maxRotateAttempts races in a row.
var errContention = errors.New("apikey/sqlstore: rotate: too many concurrent rotations for this user, try again")

// columns lists every api_keys column a Key holds, in the order of row's fields.
const columns = `id, user_id, key_hash, key_prefix, key_last4, plan, status,
	monthly_call_limit, calls_used, cycle_start, created_at, last_used_at, revoked_at, revoke_reason`

// row is an api_keys row as both databases return it.
type row struct {
	ID               string     `db:"id"`
	UserID           string     `db:"user_id"`
	Hash             string     `db:"key_hash"`
	KeyPrefix        string     `db:"key_prefix"`
	Last4            string     `db:"key_last4"`
	Plan             string     `db:"plan"`
	Status           string     `db:"status"`
	MonthlyCallLimit int64      `db:"monthly_call_limit"`
	CallsUsed        int64      `db:"calls_used"`
	CycleStart       sqldb.Time `db:"cycle_start"`
	CreatedAt        sqldb.Time `db:"created_at"`
	LastUsedAt       sqldb.Time `db:"last_used_at"`
	RevokedAt        sqldb.Time `db:"revoked_at"`
	RevokeReason     string     `db:"revoke_reason"`
}

func (r row) key() apikey.Key {
	return apikey.Key{
		ID:               r.ID,
		UserID:           r.UserID,
		Hash:             r.Hash,
		KeyPrefix:        r.KeyPrefix,
		Last4:            r.Last4,
		Plan:             r.Plan,
		Status:           apikey.Status(r.Status),
		MonthlyCallLimit: r.MonthlyCallLimit,
		CallsUsed:        r.CallsUsed,
		CycleStart:       r.CycleStart.Time,
		CreatedAt:        r.CreatedAt.Time,
		LastUsedAt:       r.LastUsedAt.Time,
		RevokedAt:        r.RevokedAt.Time,
		RevokeReason:     r.RevokeReason,
	}
}

// queries are the store's statements, rebound once for the database's placeholders.
type queries struct {
	insert, byHash, byID, listByUser, exists  string
	revoke, revokeUser, revokeActive, nActive string
}

func newQueries(db *sqlx.DB) *queries {
	return &queries{
		insert: db.Rebind(`INSERT INTO api_keys (` + columns + `)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		byHash:     db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE key_hash = ?`),
		byID:       db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE id = ?`),
		listByUser: db.Rebind(`SELECT ` + columns + ` FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC`),
		exists:     db.Rebind(`SELECT COUNT(*) FROM api_keys WHERE id = ?`),
		revoke: db.Rebind(`UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE id = ? AND status = 'active'`),
		revokeUser: db.Rebind(`UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE user_id = ? AND status = 'active'`),
		revokeActive: db.Rebind(`UPDATE api_keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?
			WHERE user_id = ? AND status = 'active' RETURNING ` + columns),
		nActive: db.Rebind(`SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND status = 'active'`),
	}
}

// querier is what the store needs from a *sqlx.DB or a *sqlx.Tx.
type querier interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// Store keeps keys in the api_keys table. It is safe for concurrent use, except a
// store from WithTx, which is as safe as its transaction.
type Store struct {
	db *sqlx.DB
	q  querier
	tx *sqlx.Tx // nil unless the store is bound to a caller's transaction
	qs *queries
	// byHash is ByHash's prepared statement, shared with WithTx copies; nil until
	// first use.
	byHash *atomic.Pointer[sqlx.Stmt]
}

// New returns a store on db. Call Bootstrap once at start-up to create or upgrade
// the table.
func New(db *sqlx.DB) *Store {
	return &Store{db: db, q: db, qs: newQueries(db), byHash: new(atomic.Pointer[sqlx.Stmt])}
}

// Bootstrap creates the api_keys table and its indexes if they are missing, and adds
// the columns an older table lacks (see sqldb.KeysTable). It is idempotent.
func (s *Store) Bootstrap(ctx context.Context) error {
	if err := sqldb.Bootstrap(ctx, s.db, sqldb.KeysTable); err != nil {
		return fmt.Errorf("apikey/sqlstore: %w", err)
	}
	return nil
}

// WithTx returns a store whose methods all run inside tx, Rotate included (it then
// begins no transaction of its own), so a caller can revoke and issue keys in the
// same transaction as its own writes. The caller commits or rolls back tx. On
// PostgreSQL an error from a statement aborts tx, so roll it back after any error;
// Rotate's handling of concurrent rotations relies on READ COMMITTED, the default.
func (s *Store) WithTx(tx *sqlx.Tx) *Store {
	return &Store{db: s.db, q: tx, tx: tx, qs: s.qs, byHash: s.byHash}
}

// Create implements apikey.Store.
func (s *Store) Create(ctx context.Context, k *apikey.Key) error {
	if err := keyprep.ForCreate(k); err != nil {
		return fmt.Errorf("apikey/sqlstore: create: %w", err)
	}
	return s.insert(ctx, s.q, k)
}

func (s *Store) insert(ctx context.Context, q querier, k *apikey.Key) error {
	_, err := q.ExecContext(ctx, s.qs.insert,
		k.ID, k.UserID, k.Hash, k.KeyPrefix, k.Last4, k.Plan, string(k.Status),
		k.MonthlyCallLimit, k.CallsUsed, sqldb.T(k.CycleStart), sqldb.T(k.CreatedAt),
		sqldb.T(k.LastUsedAt), sqldb.T(k.RevokedAt), k.RevokeReason)
	switch {
	case err == nil:
		return nil
	case activeConflict(err):
		return apikey.ErrActiveExists
	case sqldb.IsUniqueViolation(err):
		return errors.New("apikey/sqlstore: create: a key with that ID or hash exists")
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

// ByHash implements apikey.Store. It runs on every authenticated request, so outside
// a WithTx transaction its statement is prepared once and reused: on PostgreSQL that
// saves a round trip and a plan per call.
func (s *Store) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	if s.tx != nil {
		var r row
		return result("by hash", r, s.q.GetContext(ctx, &r, s.qs.byHash, hash))
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
	var r row
	err := st.GetContext(ctx, &r, hash)
	return result("by hash", r, err)
}

// ByID implements apikey.Store.
func (s *Store) ByID(ctx context.Context, id string) (apikey.Key, error) {
	var r row
	err := s.q.GetContext(ctx, &r, s.qs.byID, id)
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
	if err := s.q.SelectContext(ctx, &rows, s.qs.listByUser, userID); err != nil {
		return nil, fmt.Errorf("apikey/sqlstore: list: %w", err)
	}
	keys := make([]apikey.Key, len(rows))
	for i, r := range rows {
		keys[i] = r.key()
	}
	return keys, nil
}

// Revoke implements apikey.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) error {
	res, err := s.q.ExecContext(ctx, s.qs.revoke, sqldb.T(now), reason, id)
	if err != nil {
		return fmt.Errorf("apikey/sqlstore: revoke: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("apikey/sqlstore: revoke: %w", err)
	} else if n > 0 {
		return nil
	}
	var n int
	if err := s.q.GetContext(ctx, &n, s.qs.exists, id); err != nil {
		return fmt.Errorf("apikey/sqlstore: revoke: %w", err)
	}
	if n == 0 {
		return apikey.ErrNotFound
	}
	return nil // already revoked
}

// RevokeUser implements apikey.Store.
func (s *Store) RevokeUser(ctx context.Context, userID, reason string, now time.Time) (int, error) {
	res, err := s.q.ExecContext(ctx, s.qs.revokeUser, sqldb.T(now), reason, userID)
	if err != nil {
		return 0, fmt.Errorf("apikey/sqlstore: revoke user: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("apikey/sqlstore: revoke user: %w", err)
	}
	return int(n), nil
}

// Rotate implements apikey.Store: in one transaction it revokes the user's active key
// (reason "rotated") and inserts next. The successor keeps the old key's plan,
// monthly_call_limit, calls_used and cycle_start; resetting them would hand out a
// fresh monthly quota on every rotation, a free way around the limit.
//
// Concurrent rotations for one user run one after another and all succeed, each
// revoking the key the previous one created, so exactly one key ends up active. On
// SQLite the write lock orders them. On PostgreSQL a rotation that waited for the
// row lock finds the key it waited for revoked and its successor invisible to its
// statement; it then looks again with a fresh statement, up to 64 times, and
// returns ErrNoActiveKey only when the user really has no active key.
func (s *Store) Rotate(ctx context.Context, userID string, next *apikey.Key, now time.Time) (apikey.Key, error) {
	if s.tx != nil {
		return s.rotate(ctx, s.tx, userID, next, now)
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	old, err := s.rotate(ctx, tx, userID, next, now)
	if err != nil {
		return apikey.Key{}, err
	}
	if err := tx.Commit(); err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
	}
	return old, nil
}

func (s *Store) rotate(ctx context.Context, q querier, userID string, next *apikey.Key, now time.Time) (apikey.Key, error) {
	// Checked before any write, so that a caller's transaction stays usable.
	if err := keyprep.CheckNext(next, now); err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
	}
	var r row
	for attempt := 1; ; attempt++ {
		err := q.GetContext(ctx, &r, s.qs.revokeActive, sqldb.T(now), keyprep.RotateReason, userID)
		if err == nil {
			break
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return apikey.Key{}, fmt.Errorf("apikey/sqlstore: rotate: %w", err)
		}
		var n int
		if err := q.GetContext(ctx, &n, s.qs.nActive, userID); err != nil {
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
