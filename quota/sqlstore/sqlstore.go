// Package sqlstore keeps quota counters in the api_keys table, on PostgreSQL or
// SQLite through sqlx, so that every replica on the same database shares them.
//
// The store reads and writes only the quota columns of api_keys (monthly_call_limit,
// calls_used, cycle_start, quota_granted, status and last_used_at); the rows
// themselves are created and revoked by whoever issues keys (apikey/sqlstore). It
// never imports a database driver: the application opens the handle.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
)

// Config holds the optional settings of a Store.
type Config struct {
	// Cycle is the length of a quota cycle. Zero means quota.DefaultCycle.
	Cycle time.Duration
}

// Store is a quota.Store on the api_keys table. It is safe for concurrent use, and
// any number of Stores in any number of processes may share one database.
type Store struct {
	db    *sqlx.DB
	cycle time.Duration

	// The statements are prepared on first use, once the table exists, and live
	// as long as db.
	mu   sync.Mutex
	stmt *prepared
}

// prepared holds the Store's prepared statements.
type prepared struct {
	reserve, read, release *sqlx.NamedStmt
}

var _ quota.Store = (*Store)(nil)

// New returns a Store on db, a PostgreSQL (lib/pq) or SQLite (modernc.org/sqlite)
// handle. Run Bootstrap, or apikey's, before the first reservation.
func New(db *sqlx.DB, cfg Config) *Store {
	if cfg.Cycle <= 0 {
		cfg.Cycle = quota.DefaultCycle
	}
	return &Store{db: db, cycle: cfg.Cycle}
}

// Bootstrap creates the api_keys table if it is missing and adds the quota columns
// an older copy lacks; existing rows get a limit of 10,000 calls, nothing used and
// a cycle starting now. It is idempotent.
func (s *Store) Bootstrap(ctx context.Context) error {
	return sqldb.Bootstrap(ctx, s.db, sqldb.KeysTable)
}

// reserveSQL does the whole reservation in one statement: it restarts the cycle if
// it is due and grants min(:n, what is left) in the same row update, and matches no
// row when nothing would be granted, so that a refused call writes nothing.
//
// Why it is atomic:
//   - SET expressions see the row as it was before this statement, on both
//     databases, so the reset decision and the count are computed from one version
//     of the row.
//   - PostgreSQL (READ COMMITTED): an UPDATE takes the row lock; a concurrent UPDATE
//     of the same row waits for it, then re-evaluates WHERE and SET on the newest
//     committed version (EvalPlanQual). Two racing reservations at a due boundary
//     therefore cannot both reset: the second sees cycle_start = :now, which is no
//     longer due, and counts on top of the first. This holds across connection
//     pools and processes, since the lock lives in the database.
//   - SQLite has one writer at a time: the statement runs alone from its read of
//     the row to its write (busy_timeout queues the others).
//
// :due is now − cycle, computed in Go; cycle_start <= :due is quota.Due. MIN/MAX
// are spelled with CASE because PostgreSQL has LEAST/GREATEST and SQLite scalar
// MIN/MAX. When the row matches and the cycle is not due, calls_used <
// monthly_call_limit holds, so what is left is positive.
const reserveSQL = `UPDATE api_keys SET
	cycle_start = CASE WHEN cycle_start <= :due THEN :now ELSE cycle_start END,
	quota_granted = CASE
		WHEN cycle_start <= :due THEN
			CASE WHEN :n < monthly_call_limit THEN :n ELSE monthly_call_limit END
		WHEN :n < monthly_call_limit - calls_used THEN :n
		ELSE monthly_call_limit - calls_used
	END,
	calls_used = CASE
		WHEN cycle_start <= :due THEN
			CASE WHEN :n < monthly_call_limit THEN :n ELSE monthly_call_limit END
		WHEN :n < monthly_call_limit - calls_used THEN calls_used + :n
		ELSE monthly_call_limit
	END,
	last_used_at = :now
WHERE id = :id AND status = 'active' AND monthly_call_limit > 0
	AND (cycle_start <= :due OR calls_used < monthly_call_limit)
RETURNING monthly_call_limit, calls_used, cycle_start, quota_granted`

// readSQL reads a key's quota without writing: it explains a reservation that
// matched no row, and serves Usage.
const readSQL = `SELECT status, monthly_call_limit, calls_used, cycle_start
FROM api_keys WHERE id = :id`

// releaseSQL gives back :n calls in one statement, never below zero, and only in
// the cycle that started at :start: a cycle restarted since matches no row, nor
// does a revoked key. It is atomic for the reasons reserveSQL is.
//
// cycle_start is compared with :start as sqldb.T writes it, and with :legacy, the
// same instant as CURRENT_TIMESTAMP writes it on SQLite ("2006-01-02 15:04:05"),
// so that rows whose cycle_start came from the column default or from Bootstrap's
// backfill match too; on PostgreSQL both parameters are the same timestamp.
const releaseSQL = `UPDATE api_keys SET
	calls_used = CASE WHEN calls_used >= :n THEN calls_used - :n ELSE 0 END
WHERE id = :id AND status = 'active' AND cycle_start IN (:start, :legacy)`

// maxN bounds n to what an INTEGER column holds on PostgreSQL; a limit is never
// larger, so the bound changes no grant.
const maxN = math.MaxInt32

// attempts bounds how often Reserve retries when the update matched no row but the
// read that follows finds calls left (the row changed in between: a raised limit,
// or a cycle restarted by a replica whose clock is ahead).
const attempts = 3

// statements prepares the statements on first use.
func (s *Store) statements(ctx context.Context) (*prepared, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stmt != nil {
		return s.stmt, nil
	}
	var st prepared
	for _, p := range []struct {
		name  string
		query string
		dst   **sqlx.NamedStmt
	}{
		{"reserve", reserveSQL, &st.reserve},
		{"read", readSQL, &st.read},
		{"release", releaseSQL, &st.release},
	} {
		stmt, err := s.db.PrepareNamedContext(ctx, p.query)
		if err != nil {
			for _, done := range []*sqlx.NamedStmt{st.reserve, st.read} {
				if done != nil {
					done.Close()
				}
			}
			return nil, fmt.Errorf("quota/sqlstore: prepare %s: %w", p.name, err)
		}
		*p.dst = stmt
	}
	s.stmt = &st
	return s.stmt, nil
}

// Reserve implements quota.Store in one UPDATE … RETURNING (see reserveSQL). When
// no row comes back, a read-only SELECT tells an unknown key (quota.ErrNotFound)
// from a revoked one (quota.ErrRevoked) from an exhausted one (granted 0 and its
// usage; a due cycle reads as the fresh cycle a grant would have opened). A refused
// call writes nothing; a granted one also sets last_used_at to now.
func (s *Store) Reserve(ctx context.Context, keyID string, n int64, now time.Time) (int64, quota.Usage, error) {
	if n < 1 {
		return 0, quota.Usage{}, fmt.Errorf("quota/sqlstore: reserve %d calls: n must be at least 1", n)
	}
	st, err := s.statements(ctx)
	if err != nil {
		return 0, quota.Usage{}, err
	}
	args := map[string]any{
		"id":  keyID,
		"n":   min(n, maxN),
		"now": sqldb.T(now),
		"due": sqldb.T(now.Add(-s.cycle)),
	}
	for range attempts {
		var (
			limit, used, granted int64
			start                sqldb.Time
		)
		err := st.reserve.QueryRowxContext(ctx, args).Scan(&limit, &used, &start, &granted)
		if err == nil {
			return granted, s.usage(limit, used, start.Time), nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, quota.Usage{}, fmt.Errorf("quota/sqlstore: reserve: %w", err)
		}
		u, more, err := s.current(ctx, st.read, keyID, now)
		if err != nil || !more {
			return 0, u, err
		}
	}
	// The row kept changing under us; report it as refused rather than spin.
	u, _, err := s.current(ctx, st.read, keyID, now)
	return 0, u, err
}

// Release implements quota.Store in one UPDATE (see releaseSQL). When it matches
// no row, a read-only SELECT tells an unknown key (quota.ErrNotFound) from one that
// is revoked or in another cycle (nil: nothing to give back).
func (s *Store) Release(ctx context.Context, keyID string, n int64, cycleStart time.Time) error {
	if n < 1 {
		return fmt.Errorf("quota/sqlstore: release %d calls: n must be at least 1", n)
	}
	st, err := s.statements(ctx)
	if err != nil {
		return err
	}
	start := sqldb.T(cycleStart)
	var legacy any = start
	if start.Time.Equal(start.Time.Truncate(time.Second)) {
		legacy = start.Time.Format(time.DateTime)
	}
	res, err := st.release.ExecContext(ctx, map[string]any{
		"id":     keyID,
		"n":      min(n, maxN),
		"start":  start,
		"legacy": legacy,
	})
	if err != nil {
		return fmt.Errorf("quota/sqlstore: release: %w", err)
	}
	switch rows, err := res.RowsAffected(); {
	case err != nil:
		return fmt.Errorf("quota/sqlstore: release: %w", err)
	case rows > 0:
		return nil
	}
	_, _, err = s.current(ctx, st.read, keyID, cycleStart)
	if errors.Is(err, quota.ErrRevoked) {
		return nil
	}
	return err
}

// Usage returns the key's usage as a reservation at now would find it, before it
// counts anything: a due cycle reads as a fresh one. It writes nothing. An unknown
// key returns quota.ErrNotFound and a revoked one quota.ErrRevoked.
func (s *Store) Usage(ctx context.Context, keyID string, now time.Time) (quota.Usage, error) {
	st, err := s.statements(ctx)
	if err != nil {
		return quota.Usage{}, err
	}
	u, _, err := s.current(ctx, st.read, keyID, now)
	return u, err
}

// current reads the key's usage at now without writing, and reports whether a
// reservation would be granted something.
func (s *Store) current(ctx context.Context, read *sqlx.NamedStmt, keyID string, now time.Time) (quota.Usage, bool, error) {
	var (
		status      string
		limit, used int64
		start       sqldb.Time
	)
	err := read.QueryRowxContext(ctx, map[string]any{"id": keyID}).Scan(&status, &limit, &used, &start)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return quota.Usage{}, false, quota.ErrNotFound
	case err != nil:
		return quota.Usage{}, false, fmt.Errorf("quota/sqlstore: read: %w", err)
	case status != "active":
		return quota.Usage{}, false, quota.ErrRevoked
	}
	if quota.Due(start.Time, now, s.cycle) {
		start, used = sqldb.T(now), 0
	}
	return s.usage(limit, used, start.Time), used < limit, nil
}

func (s *Store) usage(limit, used int64, start time.Time) quota.Usage {
	return quota.Usage{Limit: limit, Used: used, CycleStart: start, Reset: quota.CycleEnd(start, s.cycle)}
}
