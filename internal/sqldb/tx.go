package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// Querier is what a store runs statements on: a *sqlx.DB or a *sqlx.Tx.
type Querier interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// Transactions travel in the context, so that stores of different packages on one
// database (api keys, quotas, billing state) join one transaction without
// importing each other: Atomic begins it, and every store method called with the
// context it hands over runs its statements inside it.
type txKey struct{}

type ctxTx struct {
	db    *sql.DB
	tx    *sqlx.Tx
	after *[]func() // run once the transaction has committed
}

// InTx returns the transaction ctx carries on db, if any.
func InTx(ctx context.Context, db *sqlx.DB) (*sqlx.Tx, bool) {
	if t, ok := ctx.Value(txKey{}).(ctxTx); ok && t.db == db.DB {
		return t.tx, true
	}
	return nil, false
}

// Q returns what a statement on db runs on: the transaction ctx carries on db, or
// db itself.
func Q(ctx context.Context, db *sqlx.DB) Querier {
	if tx, ok := InTx(ctx, db); ok {
		return tx
	}
	return db
}

// Atomic runs fn in a transaction on db and commits it when fn returns nil; an
// error from fn rolls it back and is returned as it is. If ctx already carries a
// transaction on db, fn runs inside that one (the outer caller commits). fn's
// context carries the transaction: pass it to every store call that must be part
// of it. On SQLite Atomic holds the database's write lock (see Write) throughout.
func Atomic(ctx context.Context, db *sqlx.DB, fn func(ctx context.Context) error) error {
	if _, ok := InTx(ctx, db); ok {
		return fn(ctx)
	}
	unlock := lockWrites(db)
	defer func() { unlock() }()
	var tx *sqlx.Tx
	err := RetryBusy(ctx, func() (err error) {
		tx, err = db.BeginTxx(ctx, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqldb: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var after []func()
	if err := fn(context.WithValue(ctx, txKey{}, ctxTx{db: db.DB, tx: tx, after: &after})); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return &CommitError{Err: err}
	}
	unlock()
	unlock = func() {}
	for _, f := range after {
		f()
	}
	return nil
}

// IsBusy reports whether err is SQLite's SQLITE_BUSY (5): the database was locked
// by another connection and the busy handler did not wait, as SQLite does when
// waiting could deadlock, such as while a new file switches to WAL.
func IsBusy(err error) bool {
	var lite interface{ Code() int }
	return errors.As(err, &lite) && lite.Code()&0xff == 5
}

// RetryBusy runs fn, which must have changed nothing when it fails with
// SQLITE_BUSY (a BEGIN, an idempotent bootstrap), again while it does, for up to
// about two seconds.
func RetryBusy(ctx context.Context, fn func() error) error {
	wait := 5 * time.Millisecond
	for deadline := time.Now().Add(2 * time.Second); ; wait = min(2*wait, 200*time.Millisecond) {
		err := fn()
		if err == nil || !IsBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// CommitError is Atomic's error when COMMIT itself failed: the connection may have
// broken after the database committed and before its answer arrived, so whether
// the transaction took effect is unknown. A caller whose writes must not be lost
// or applied twice records something it can look up later (a token) in the
// transaction, and looks it up.
type CommitError struct{ Err error }

func (e *CommitError) Error() string { return "sqldb: commit: " + e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

// AfterCommit runs fn once the transaction ctx carries on db has committed, or at
// once when ctx carries none; a transaction that rolls back never runs it. Stores
// use it to tell this process's caches about a change only when it is durable.
func AfterCommit(ctx context.Context, db *sqlx.DB, fn func()) {
	if t, ok := ctx.Value(txKey{}).(ctxTx); ok && t.db == db.DB {
		*t.after = append(*t.after, fn)
		return
	}
	fn()
}

// Write runs fn, which writes through q, outside any transaction of ctx's or inside
// it. On SQLite, one process writes at a time: outside a transaction Write holds the
// database's write lock while fn runs, so that writers queue in Go rather than in
// SQLite's busy handler (which sleeps up to 100 ms a try), while readers go on in
// parallel on the pool's other connections (WAL).
func Write(ctx context.Context, db *sqlx.DB, fn func(q Querier) error) error {
	if tx, ok := InTx(ctx, db); ok {
		return fn(tx)
	}
	unlock := lockWrites(db)
	defer unlock()
	return fn(db)
}

// writeLocks holds one mutex per SQLite pool. Pools are few and live as long as the
// process, so entries are never removed.
var writeLocks sync.Map // *sql.DB → *sync.Mutex

func lockWrites(db *sqlx.DB) (unlock func()) {
	if IsPostgres(db) {
		return func() {}
	}
	m, _ := writeLocks.LoadOrStore(db.DB, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Pool sizes Tune sets on a pool left at database/sql's defaults (no limit).
const (
	// PostgresConns bounds a PostgreSQL pool: with no bound, 500 racing requests
	// opened connections until the server refused them (max_connections 100).
	PostgresConns = 16
	// SQLiteConns is the size of a SQLite pool: one writer at a time (see Write)
	// and readers beside it.
	SQLiteConns = 4
)

// Tune gives db the pool sizes the stores are built for, unless the application
// has bounded the pool itself (db.Stats().MaxOpenConnections > 0): PostgresConns
// or SQLiteConns open connections, as many kept idle.
func Tune(db *sqlx.DB) {
	if db.Stats().MaxOpenConnections > 0 {
		return
	}
	n := SQLiteConns
	if IsPostgres(db) {
		n = PostgresConns
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
}

// Statements prepared once per pool and query text, so that a query run on every
// request is parsed and planned once, not each time (SQLite parses a query on every
// run otherwise; PostgreSQL plans it).
var stmts sync.Map // *sql.DB → *stmtCache

type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sqlx.Stmt
}

// maxStmts bounds the statements kept per pool; past it, queries run unprepared.
const maxStmts = 256

// prepared returns query prepared on db, or nil when the cache is full.
func prepared(ctx context.Context, db *sqlx.DB, query string) (*sqlx.Stmt, error) {
	v, _ := stmts.LoadOrStore(db.DB, &stmtCache{m: make(map[string]*sqlx.Stmt)})
	c := v.(*stmtCache)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	if len(c.m) >= maxStmts {
		return nil, nil
	}
	st, err := db.PreparexContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = st
	return st, nil
}

// Get runs query (in db's bind syntax) and scans its one row into dest, on the
// transaction ctx carries on db, or else on a statement prepared once for db.
func Get(ctx context.Context, db *sqlx.DB, dest any, query string, args ...any) error {
	if tx, ok := InTx(ctx, db); ok {
		return tx.GetContext(ctx, dest, query, args...)
	}
	st, err := prepared(ctx, db, query)
	if err != nil || st == nil {
		return db.GetContext(ctx, dest, query, args...)
	}
	return st.GetContext(ctx, dest, args...)
}

// Select runs query as Get does and scans its rows into dest, a slice.
func Select(ctx context.Context, db *sqlx.DB, dest any, query string, args ...any) error {
	if tx, ok := InTx(ctx, db); ok {
		return tx.SelectContext(ctx, dest, query, args...)
	}
	st, err := prepared(ctx, db, query)
	if err != nil || st == nil {
		return db.SelectContext(ctx, dest, query, args...)
	}
	return st.SelectContext(ctx, dest, args...)
}
