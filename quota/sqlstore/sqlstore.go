// Package sqlstore is a quota.Store in a table on PostgreSQL or SQLite, through
// sqlx, so that every replica on the same database shares the quotas.
//
// By default the quotas live in the api_keys table that apikey/sqlstore writes,
// one quota per key row, in the columns monthly_call_limit, calls_used,
// cycle_start and quota_granted: the key store creates the rows, and this store
// adds, reads and writes only its own columns. Config names another table and
// other columns, such as a dedicated quotas table whose rows Put creates.
//
// Every method runs its statements in the transaction the context carries on the
// store's database, if any (see Store), so that a key and its quota commit
// together.
//
// The package imports no driver: open the database with the driver of your choice
// and pass the handle to New, which bounds an unbounded pool (16 connections on
// PostgreSQL, 4 on SQLite: one writer at a time, readers beside it) unless the
// application set its own. For SQLite (modernc.org/sqlite, driver "sqlite") open
// the DSN that tollgate.SQLiteDSN returns: WAL, a busy timeout, synchronous=NORMAL
// and immediate write transactions.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
)

// Config holds the settings of a Store. The zero value counts in 30-day cycles in
// the api_keys table's quota columns.
type Config struct {
	// Cycle is the length of a quota cycle. Zero (or less) means
	// quota.DefaultCycle.
	Cycle time.Duration
	// Table and Columns name where the store counts. A zero Table means api_keys;
	// each zero column name means its default (see Columns). Names are lower-case
	// SQL identifiers ([a-z_][a-z0-9_]*, at most 63 bytes), all columns distinct;
	// the table is found on the connection's search path. Anything else is a
	// configuration error that Bootstrap and every method return, before any SQL
	// runs.
	Table   string
	Columns Columns
	// DefaultLimit is the limit that rows existing before Bootstrap added the
	// limit column get (0 by default: no calls until Put). It must not be
	// negative. Rows inserted later without a limit get 0.
	DefaultLimit int64
	// Journal names the table where every reservation and release records a
	// token in its own transaction, so that one whose COMMIT lost its answer can
	// be looked up (Confirm) rather than guessed at: see Store. Zero means
	// "quota_journal". Tokens older than an hour are pruned.
	Journal string
	// Now is the clock that dates the journal's tokens (the quota's own times are
	// the callers'); nil means time.Now.
	Now func() time.Time
}

// Columns names the columns of a quota. A zero field means the default name, given
// with each field.
type Columns struct {
	ID         string // "id": the quota ID, the table's primary key
	Limit      string // "monthly_call_limit": calls a cycle
	Used       string // "calls_used": calls counted in the current cycle
	CycleStart string // "cycle_start": when the current cycle started
	Granted    string // "quota_granted": what the last reservation granted
}

// The defaults of Config.Table and Config.Columns: the api_keys table's quota
// columns.
const defaultTable = "api_keys"

// defaultJournal is the default of Config.Journal.
const defaultJournal = "quota_journal"

var defaultColumns = Columns{
	ID:         "id",
	Limit:      "monthly_call_limit",
	Used:       "calls_used",
	CycleStart: "cycle_start",
	Granted:    "quota_granted",
}

// identifier is what a table or column name must look like. Names are also
// double-quoted in the SQL, so reserved words such as "limit" work.
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Store is a quota.Store on a table. It is safe for concurrent use, and any number
// of Stores in any number of processes may share one database. The zero value is
// not usable; call New.
//
// Transactions: when ctx carries a transaction on the Store's database (one that
// apikey/sqlstore's Store.Atomic began, as the gate's key issue does), every
// method runs inside it, and its writes commit or roll back with it. Otherwise
// Put is its own atomic statement (at most three), and Reserve and Release each
// run in a transaction of their own that also writes a token to the journal
// (Config.Journal). That is what makes them safe against a connection that breaks
// at the wrong moment: database/sql replays a lone statement on a new connection
// when the driver reports the old one broken, even one PostgreSQL had committed
// (lib/pq does so when the answer is lost), which would count calls twice; it
// replays nothing inside a transaction. When the COMMIT itself loses its answer,
// the store looks the token up; if it cannot (the database is down), it returns
// a *quota.InDoubtError, which Confirm settles later (quota.Leases does). On
// SQLite writes queue for the database's write lock in the process rather than in
// SQLite's busy handler.
type Store struct {
	db    *sqlx.DB
	cycle time.Duration
	cfg   Config // names filled in with their defaults
	err   error  // a configuration error, returned by every method
	sql   [numStmts]string

	// The statements are prepared on first use outside a transaction, once the
	// table exists, and live as long as db.
	mu       sync.Mutex
	prepared *[numStmts]*sqlx.NamedStmt
	pruned   atomic.Int64 // unix nanoseconds of the journal's last pruning
}

var (
	_ quota.Store     = (*Store)(nil)
	_ quota.Confirmer = (*Store)(nil)
)

// The Store's statements, indexes of Store.sql.
const (
	reserveStmt = iota
	readStmt
	releaseStmt
	putUpdateStmt
	putInsertStmt
	journalStmt
	confirmStmt
	pruneStmt
	numStmts
)

var stmtNames = [numStmts]string{"reserve", "read", "release", "put update", "put insert", "journal", "confirm", "prune"}

// New returns a Store on db, a PostgreSQL (lib/pq, pgx) or SQLite
// (modernc.org/sqlite) handle; run Bootstrap before its first use. Unless the
// application has bounded db's pool already (SetMaxOpenConns), New bounds it to
// the sizes the stores are built for: 16 connections on PostgreSQL, 4 on SQLite,
// as many kept idle. A configuration error (see Config) is returned by Bootstrap
// and every method.
func New(db *sqlx.DB, cfg Config) *Store {
	sqldb.Tune(db)
	if cfg.Cycle <= 0 {
		cfg.Cycle = quota.DefaultCycle
	}
	s := &Store{db: db, cycle: cfg.Cycle}
	s.cfg, s.err = check(cfg)
	if s.err == nil {
		s.sql = statements(s.cfg)
	}
	return s
}

// check fills in cfg's default names and validates them and DefaultLimit.
func check(cfg Config) (Config, error) {
	c := &cfg.Columns
	names := []struct {
		what string
		name *string
		def  string
	}{
		{"Table", &cfg.Table, defaultTable},
		{"Columns.ID", &c.ID, defaultColumns.ID},
		{"Columns.Limit", &c.Limit, defaultColumns.Limit},
		{"Columns.Used", &c.Used, defaultColumns.Used},
		{"Columns.CycleStart", &c.CycleStart, defaultColumns.CycleStart},
		{"Columns.Granted", &c.Granted, defaultColumns.Granted},
	}
	if cfg.Journal == "" {
		cfg.Journal = defaultJournal
	}
	if !identifier.MatchString(cfg.Journal) {
		return cfg, fmt.Errorf("quota/sqlstore: config: Journal %q is not a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes)", cfg.Journal)
	}
	if cfg.Journal == cfg.Table || (cfg.Table == "" && cfg.Journal == defaultTable) {
		return cfg, fmt.Errorf("quota/sqlstore: config: Journal and Table are both %q", cfg.Journal)
	}
	seen := make(map[string]string, len(names))
	for i, n := range names {
		if *n.name == "" {
			*n.name = n.def
		}
		if !identifier.MatchString(*n.name) {
			return cfg, fmt.Errorf("quota/sqlstore: config: %s %q is not a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes)", n.what, *n.name)
		}
		if i == 0 {
			continue // the table's name may equal a column's
		}
		if other, ok := seen[*n.name]; ok {
			return cfg, fmt.Errorf("quota/sqlstore: config: %s and %s are both %q", other, n.what, *n.name)
		}
		seen[*n.name] = n.what
	}
	if cfg.DefaultLimit < 0 {
		return cfg, fmt.Errorf("quota/sqlstore: config: negative DefaultLimit %d", cfg.DefaultLimit)
	}
	return cfg, nil
}

// quoted returns name as a quoted SQL identifier; name is a checked identifier.
func quoted(name string) string { return `"` + name + `"` }

// statements returns the Store's SQL for the checked names of cfg.
//
// The reservation is one statement: it restarts the cycle if it is due and grants
// min(:n, what is left) in the same row update, and matches no row when nothing
// would be granted, so that a refused call writes nothing.
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
//     the row to its write.
//
// :due is now − cycle, computed in Go; cycle_start <= :due is quota.Due. MIN/MAX
// are spelled with CASE because PostgreSQL has LEAST/GREATEST and SQLite scalar
// MIN/MAX. When the row matches and the cycle is not due, used < limit holds, so
// what is left is positive, and used + :n is computed only below the limit, so
// nothing overflows a 64-bit column whatever :n is.
//
// The release gives back :n calls, never below zero, only in the cycle that
// started at :start: a cycle restarted since matches no row. It is atomic for the
// reasons the reservation is. cycle_start is compared with :start as sqldb.T writes
// it and with :legacy, the same instant as SQLite's CURRENT_TIMESTAMP writes it
// ("2006-01-02 15:04:05"), so that rows whose cycle_start an older schema's column
// default wrote match too; on PostgreSQL both are the same timestamp.
//
// Put updates the row and inserts it when none matched; the insert does nothing
// when a racing Put inserted the row first (and Put then updates it).
func statements(cfg Config) [numStmts]string {
	var (
		t     = quoted(cfg.Table)
		id    = quoted(cfg.Columns.ID)
		limit = quoted(cfg.Columns.Limit)
		used  = quoted(cfg.Columns.Used)
		start = quoted(cfg.Columns.CycleStart)
		grant = quoted(cfg.Columns.Granted)
	)
	r := strings.NewReplacer("{T}", t, "{ID}", id, "{L}", limit, "{U}", used, "{S}", start, "{G}", grant, "{J}", quoted(cfg.Journal))
	return [numStmts]string{
		reserveStmt: r.Replace(`UPDATE {T} SET
	{S} = CASE WHEN {S} <= :due THEN :now ELSE {S} END,
	{G} = CASE
		WHEN {S} <= :due THEN
			CASE WHEN :n < {L} THEN :n ELSE {L} END
		WHEN :n < {L} - {U} THEN :n
		ELSE {L} - {U}
	END,
	{U} = CASE
		WHEN {S} <= :due THEN
			CASE WHEN :n < {L} THEN :n ELSE {L} END
		WHEN :n < {L} - {U} THEN {U} + :n
		ELSE {L}
	END
WHERE {ID} = :id AND {L} > 0 AND ({S} <= :due OR {U} < {L})
RETURNING {L}, {U}, {S}, {G}`),
		readStmt: r.Replace(`SELECT {L}, {U}, {S} FROM {T} WHERE {ID} = :id`),
		releaseStmt: r.Replace(`UPDATE {T} SET
	{U} = CASE WHEN {U} >= :n THEN {U} - :n ELSE 0 END
WHERE {ID} = :id AND {S} IN (:start, :legacy)`),
		putUpdateStmt: r.Replace(`UPDATE {T} SET {L} = :limit, {U} = 0, {S} = :start, {G} = 0 WHERE {ID} = :id`),
		putInsertStmt: r.Replace(`INSERT INTO {T} ({ID}, {L}, {U}, {S}, {G}) VALUES (:id, :limit, 0, :start, 0) ON CONFLICT DO NOTHING`),
		journalStmt:   r.Replace(`INSERT INTO {J} (token, quota_id, calls, created_at) VALUES (:token, :id, :calls, :now)`),
		confirmStmt:   r.Replace(`SELECT COUNT(*) FROM {J} WHERE token = :token`),
		pruneStmt:     r.Replace(`DELETE FROM {J} WHERE created_at < :before`),
	}
}

// attempts bounds how often Reserve retries when the update matched no row but the
// read that follows finds calls left (the row changed in between: a raised limit,
// or a cycle restarted by a replica whose clock is ahead).
const attempts = 3

// statementsOnDB prepares the statements on first use.
func (s *Store) statementsOnDB(ctx context.Context) (*[numStmts]*sqlx.NamedStmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prepared != nil {
		return s.prepared, nil
	}
	var st [numStmts]*sqlx.NamedStmt
	for i, query := range s.sql {
		stmt, err := s.db.PrepareNamedContext(ctx, query)
		if err != nil {
			for _, done := range st[:i] {
				done.Close()
			}
			return nil, fmt.Errorf("prepare %s: %w", stmtNames[i], err)
		}
		st[i] = stmt
	}
	s.prepared = &st
	return s.prepared, nil
}

// queryRow runs statement i on q, which is s.db or the transaction ctx carries,
// and scans its one row into dest; sql.ErrNoRows when there is none. Outside a
// transaction it uses the prepared statement; inside one, the SQL text, so that
// nothing is prepared on another connection while the transaction runs.
func (s *Store) queryRow(ctx context.Context, q sqldb.Querier, i int, arg map[string]any, dest ...any) error {
	if tx, ok := q.(*sqlx.Tx); ok {
		rows, err := sqlx.NamedQueryContext(ctx, tx, s.sql[i], arg)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return sql.ErrNoRows
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		return rows.Close()
	}
	st, err := s.statementsOnDB(ctx)
	if err != nil {
		return err
	}
	return st[i].QueryRowxContext(ctx, arg).Scan(dest...)
}

// exec runs statement i on q as queryRow does and returns the rows it affected.
func (s *Store) exec(ctx context.Context, q sqldb.Querier, i int, arg map[string]any) (int64, error) {
	var (
		res sql.Result
		err error
	)
	if tx, ok := q.(*sqlx.Tx); ok {
		res, err = sqlx.NamedExecContext(ctx, tx, s.sql[i], arg)
	} else {
		var st *[numStmts]*sqlx.NamedStmt
		if st, err = s.statementsOnDB(ctx); err != nil {
			return 0, err
		}
		res, err = st[i].ExecContext(ctx, arg)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Put implements quota.Store: it updates quota id's row and inserts the row when
// there is none. On a table whose rows another store creates (the default
// api_keys, whose rows need a user and a key hash) the insert fails, and so does
// Put: create the key first and Put its quota in the same transaction, as the
// gate's key issue does. A negative limit is an error.
func (s *Store) Put(ctx context.Context, id string, limit int64, cycleStart time.Time) error {
	if s.err != nil {
		return s.err
	}
	if limit < 0 {
		return fmt.Errorf("quota/sqlstore: put %q: negative limit %d", id, limit)
	}
	arg := map[string]any{"id": id, "limit": limit, "start": sqldb.T(cycleStart)}
	return sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		if n, err := s.exec(ctx, q, putUpdateStmt, arg); err != nil || n > 0 {
			return wrap(err, "put %q", id)
		}
		n, err := s.exec(ctx, q, putInsertStmt, arg)
		if err != nil {
			return fmt.Errorf("quota/sqlstore: put %q: no row in %s to update, and inserting one failed "+
				"(on a table whose rows another store creates, such as api_keys, create the key first, "+
				"then Put its quota, in one transaction): %w", id, s.cfg.Table, err)
		}
		if n > 0 {
			return nil
		}
		// A racing Put inserted the row between our update and our insert.
		if n, err = s.exec(ctx, q, putUpdateStmt, arg); err != nil || n > 0 {
			return wrap(err, "put %q", id)
		}
		return fmt.Errorf("quota/sqlstore: put %q: the row was deleted while Put ran", id)
	})
}

// wrap returns nil for a nil err, else err wrapped with the package prefix and
// the formatted operation.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("quota/sqlstore: "+format+": %w", append(args, err)...)
}

// Reserve implements quota.Store in one UPDATE … RETURNING that restarts a due
// cycle and grants min(n, what is left) from one version of the row, and matches
// no row when it would grant nothing; PostgreSQL's row lock (racing updates
// re-read the row once it is free) and SQLite's single writer make it atomic
// across pools and processes, so a due boundary under a race resets once. When no
// row comes back, a read-only SELECT tells an unknown ID (quota.ErrNotFound) from
// an exhausted quota (granted 0 and its usage; a due cycle reads as the fresh
// cycle a grant would have opened). A refused call writes nothing.
func (s *Store) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	if s.err != nil {
		return 0, quota.Usage{}, s.err
	}
	if n < 1 {
		return 0, quota.Usage{}, fmt.Errorf("quota/sqlstore: reserve %d calls: n must be at least 1", n)
	}
	arg := map[string]any{
		"id":  id,
		"n":   n,
		"now": sqldb.T(now),
		"due": sqldb.T(now.Add(-s.cycle)),
	}
	for range attempts {
		var (
			limit, used, granted int64
			start                sqldb.Time
			token                = newToken()
		)
		// Its own transaction, with a token in the journal: database/sql replays
		// a statement on a fresh connection when the driver reports the old one
		// bad, even after PostgreSQL committed it (lib/pq does so when the answer
		// is lost), which would grant the calls twice; inside a transaction
		// nothing is replayed, and a COMMIT whose answer is lost is looked up.
		err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
			q := sqldb.Q(ctx, s.db)
			if err := s.queryRow(ctx, q, reserveStmt, arg, &limit, &used, &start, &granted); err != nil {
				return err
			}
			return s.record(ctx, q, token, id, granted)
		})
		u := s.usage(limit, used, start.Time)
		var commit *sqldb.CommitError
		switch {
		case err == nil:
			return granted, u, nil
		case errors.As(err, &commit):
			if err := s.resolve(ctx, token, granted, start.Time, false, err); err != nil {
				return 0, quota.Usage{}, err
			}
			return granted, u, nil
		case !errors.Is(err, sql.ErrNoRows):
			return 0, quota.Usage{}, wrap(err, "reserve")
		}
		u, more, err := s.current(ctx, id, now)
		if err != nil || !more {
			return 0, u, err
		}
	}
	// The row kept changing under us; report it as refused rather than spin.
	u, _, err := s.current(ctx, id, now)
	return 0, u, err
}

// newToken returns a random token naming one reservation or release.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pruneEvery is how often the journal loses its tokens older than pruneAfter.
const (
	pruneEvery = time.Minute
	pruneAfter = time.Hour
)

// record writes token to the journal in the transaction q is, and now and then
// prunes old tokens there too.
func (s *Store) record(ctx context.Context, q sqldb.Querier, token, id string, calls int64) error {
	now := time.Now()
	if s.cfg.Now != nil {
		now = s.cfg.Now()
	}
	if _, err := s.exec(ctx, q, journalStmt, map[string]any{"token": token, "id": id, "calls": calls, "now": sqldb.T(now)}); err != nil {
		return err
	}
	if last := s.pruned.Load(); now.UnixNano()-last >= int64(pruneEvery) && s.pruned.CompareAndSwap(last, now.UnixNano()) {
		if _, err := s.exec(ctx, q, pruneStmt, map[string]any{"before": sqldb.T(now.Add(-pruneAfter))}); err != nil {
			return err
		}
	}
	return nil
}

// resolve settles a change whose COMMIT failed (commitErr): it asks the journal
// whether token was committed. nil means it was; an error means it was not (the
// change did not happen) or, as a *quota.InDoubtError, that nobody can tell yet.
func (s *Store) resolve(ctx context.Context, token string, calls int64, start time.Time, release bool, commitErr error) error {
	what := "reserve"
	if release {
		what = "release"
	}
	applied, err := s.Confirm(context.WithoutCancel(ctx), token)
	switch {
	case err != nil:
		return &quota.InDoubtError{Token: token, Calls: calls, CycleStart: start, Release: release, Err: wrap(commitErr, what)}
	case applied:
		return nil
	}
	return wrap(commitErr, what)
}

// Confirm implements quota.Confirmer: whether the reservation or release named
// by token committed. Tokens are kept an hour.
func (s *Store) Confirm(ctx context.Context, token string) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	var n int
	if err := s.queryRow(ctx, sqldb.Q(ctx, s.db), confirmStmt, map[string]any{"token": token}, &n); err != nil {
		return false, wrap(err, "confirm")
	}
	return n > 0, nil
}

// Release implements quota.Store in one UPDATE, atomic as Reserve's. When it
// matches no row, a read-only SELECT tells an unknown ID (quota.ErrNotFound) from
// a quota in another cycle (nil: nothing to give back).
func (s *Store) Release(ctx context.Context, id string, n int64, cycleStart time.Time) error {
	if s.err != nil {
		return s.err
	}
	if n < 1 {
		return fmt.Errorf("quota/sqlstore: release %d calls: n must be at least 1", n)
	}
	start := sqldb.T(cycleStart)
	var legacy any = start
	if start.Time.Equal(start.Time.Truncate(time.Second)) {
		legacy = start.Time.Format(time.DateTime)
	}
	arg := map[string]any{"id": id, "n": n, "start": start, "legacy": legacy}
	var rows int64
	token := newToken()
	// Its own transaction with a token, for the reasons Reserve's is: a replayed
	// release would give calls back twice.
	err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		var err error
		if rows, err = s.exec(ctx, q, releaseStmt, arg); err != nil || rows == 0 {
			return err
		}
		return s.record(ctx, q, token, id, -n)
	})
	var commit *sqldb.CommitError
	switch {
	case errors.As(err, &commit):
		return s.resolve(ctx, token, n, cycleStart, true, err)
	case err != nil:
		return wrap(err, "release")
	case rows > 0:
		return nil
	}
	_, _, err = s.current(ctx, id, cycleStart)
	return err
}

// Usage implements quota.Store with one SELECT: the quota as a reservation at now
// would find it; a due cycle reads as a fresh one. It writes nothing.
func (s *Store) Usage(ctx context.Context, id string, now time.Time) (quota.Usage, error) {
	if s.err != nil {
		return quota.Usage{}, s.err
	}
	u, _, err := s.current(ctx, id, now)
	return u, err
}

// current reads quota id's usage at now without writing, and reports whether a
// reservation would be granted something.
func (s *Store) current(ctx context.Context, id string, now time.Time) (quota.Usage, bool, error) {
	var (
		limit, used int64
		start       sqldb.Time
	)
	err := s.queryRow(ctx, sqldb.Q(ctx, s.db), readStmt, map[string]any{"id": id}, &limit, &used, &start)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return quota.Usage{}, false, quota.ErrNotFound
	case err != nil:
		return quota.Usage{}, false, wrap(err, "read")
	}
	if quota.Due(start.Time, now, s.cycle) {
		start, used = sqldb.T(now), 0
	}
	return s.usage(limit, used, start.Time), used < limit, nil
}

func (s *Store) usage(limit, used int64, start time.Time) quota.Usage {
	return quota.Usage{Limit: limit, Used: used, CycleStart: start, Reset: quota.CycleEnd(start, s.cycle)}
}
