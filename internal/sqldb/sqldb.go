// Package sqldb holds what tollgate's SQL stores share: dialect detection, a portable
// timestamp encoding, and an idempotent schema bootstrap for SQLite and PostgreSQL.
package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// IsPostgres reports whether db speaks PostgreSQL (lib/pq, pgx); anything else is
// treated as SQLite.
func IsPostgres(db *sqlx.DB) bool { return sqlx.BindType(db.DriverName()) == sqlx.DOLLAR }

// IsUniqueViolation reports whether err, or an error it wraps, is a unique-constraint
// violation: SQLSTATE 23505 from a PostgreSQL driver (lib/pq, pgx), or SQLite's
// extended codes SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT_PRIMARYKEY
// (1555) from modernc.org/sqlite. It matches the drivers' errors by their methods, so
// it imports neither driver.
func IsUniqueViolation(err error) bool {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState() == "23505"
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		c := lite.Code()
		return c == 2067 || c == 1555
	}
	return false
}

// SQLiteDSN returns a modernc.org/sqlite DSN for the file at path with WAL, a busy
// timeout and immediate write transactions, the settings tollgate's stores expect.
func SQLiteDSN(path string) string {
	// busy_timeout comes first: the pragmas after it, journal_mode above all, may
	// have to wait for another connection that holds the database.
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
}

// timeLayout is fixed-width so that SQLite's text comparison orders instants, and it
// is one of the layouts modernc.org/sqlite parses back into time.Time.
const timeLayout = "2006-01-02 15:04:05.000000-07:00"

// Time is a UTC timestamp that reads and writes the same way on SQLite and
// PostgreSQL (TIMESTAMP without time zone), at microsecond precision. The zero
// value is written as SQL NULL and NULL scans to the zero value.
type Time struct{ time.Time }

// T truncates t to the precision the databases keep, in UTC.
func T(t time.Time) Time { return Time{t.UTC().Truncate(time.Microsecond)} }

// Value implements driver.Valuer.
func (t Time) Value() (driver.Value, error) {
	if t.IsZero() {
		return nil, nil
	}
	return t.UTC().Truncate(time.Microsecond).Format(timeLayout), nil
}

var scanLayouts = []string{
	timeLayout,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
}

// Scan implements sql.Scanner for time.Time, text and NULL.
func (t *Time) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		t.Time = time.Time{}
		return nil
	case time.Time:
		t.Time = v.UTC()
		return nil
	case []byte:
		return t.parse(string(v))
	case string:
		return t.parse(v)
	}
	return fmt.Errorf("sqldb: cannot scan %T into a timestamp", src)
}

func (t *Time) parse(s string) error {
	for _, layout := range scanLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return fmt.Errorf("sqldb: unrecognised timestamp %q", s)
}

// Column is a column that Bootstrap adds to an existing table that lacks it.
type Column struct {
	Name string
	// Def is the column definition after the name, such as
	// "INTEGER NOT NULL DEFAULT 0".
	Def string
	// SQLiteDef replaces Def on SQLite, which cannot add a column whose default is
	// not a constant (CURRENT_TIMESTAMP). Empty means Def.
	SQLiteDef string
	// SQLiteBackfill, if set, is the expression that existing rows get on SQLite
	// when the column is added with SQLiteDef.
	SQLiteBackfill string
}

// Table describes one table for Bootstrap.
type Table struct {
	Name string
	// Create is the CREATE TABLE IF NOT EXISTS statement; it holds every column.
	Create string
	// Columns are the columns an older copy of the table may lack.
	Columns []Column
	// Indexes are the table's CREATE [UNIQUE] INDEX IF NOT EXISTS name … (or, on
	// SQLite, CREATE TRIGGER IF NOT EXISTS name …) statements; Bootstrap runs only
	// those whose object is missing and refuses a statement of any other form.
	Indexes []string
}

// Bootstrap creates the tables that are missing, adds the columns that an existing
// table lacks (existing rows get the column's default) and creates missing indexes.
// It is idempotent and safe to run from several processes at once: it runs in one
// transaction (ctx's, if it carries one on db) under the schema lock (LockSchema).
func Bootstrap(ctx context.Context, db *sqlx.DB, tables ...Table) error {
	if _, ok := InTx(ctx, db); ok {
		return bootstrap(ctx, db, tables)
	}
	// Idempotent, so retried whole when SQLite was busy.
	return RetryBusy(ctx, func() error { return bootstrap(ctx, db, tables) })
}

func bootstrap(ctx context.Context, db *sqlx.DB, tables []Table) error {
	return Atomic(ctx, db, func(ctx context.Context) error {
		if err := LockSchema(ctx, db); err != nil {
			return err
		}
		tx := Q(ctx, db)
		pg := IsPostgres(db)
		indexes, err := indexNames(ctx, tx, pg)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if _, err := tx.ExecContext(ctx, t.Create); err != nil {
				return fmt.Errorf("sqldb: create %s: %w", t.Name, err)
			}
			have, err := Columns(ctx, tx, t.Name)
			if err != nil {
				return err
			}
			for _, c := range t.Columns {
				if have[strings.ToLower(c.Name)] {
					continue
				}
				def := c.Def
				if !pg && c.SQLiteDef != "" {
					def = c.SQLiteDef
				}
				if _, err := tx.ExecContext(ctx, "ALTER TABLE "+t.Name+" ADD COLUMN "+c.Name+" "+def); err != nil {
					return fmt.Errorf("sqldb: add %s.%s: %w", t.Name, c.Name, err)
				}
				if !pg && c.SQLiteBackfill != "" {
					if _, err := tx.ExecContext(ctx, "UPDATE "+t.Name+" SET "+c.Name+" = "+c.SQLiteBackfill); err != nil {
						return fmt.Errorf("sqldb: backfill %s.%s: %w", t.Name, c.Name, err)
					}
				}
			}
			for _, ix := range t.Indexes {
				// CREATE INDEX IF NOT EXISTS locks the table against writes before it
				// looks for the index, so on a live database an index that exists is
				// skipped here: a bootstrap of an up-to-date schema (every admin
				// command, every replica's start) must not queue behind, or deadlock
				// with, the transactions of replicas that are serving.
				m := indexName.FindStringSubmatch(ix)
				if m == nil {
					return fmt.Errorf("sqldb: index on %s: want CREATE [UNIQUE] INDEX (or TRIGGER) IF NOT EXISTS name …, got %.60q", t.Name, ix)
				}
				if indexes[strings.ToLower(m[1])] {
					continue
				}
				if _, err := tx.ExecContext(ctx, ix); err != nil {
					return fmt.Errorf("sqldb: index on %s: %w", t.Name, err)
				}
			}
		}
		return nil
	})
}

// indexName finds the object's name in a CREATE [UNIQUE] INDEX IF NOT EXISTS or
// CREATE TRIGGER IF NOT EXISTS statement.
var indexName = regexp.MustCompile(`(?i)^\s*CREATE\s+(?:(?:UNIQUE\s+)?INDEX|TRIGGER)\s+IF\s+NOT\s+EXISTS\s+"?(\w+)"?`)

// indexNames returns the lower-cased names of the indexes in the current schema
// (PostgreSQL), or of the indexes and triggers in the database (SQLite).
func indexNames(ctx context.Context, q Querier, pg bool) (map[string]bool, error) {
	query := `SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')`
	if pg {
		query = `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()`
	}
	var names []string
	if err := q.SelectContext(ctx, &names, query); err != nil {
		return nil, fmt.Errorf("sqldb: list indexes: %w", err)
	}
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[strings.ToLower(n)] = true
	}
	return have, nil
}

// schemaLock is the PostgreSQL advisory lock every schema change of tollgate's
// stores takes, so that replicas starting together change the schema one after
// another.
const schemaLock = 7406346347112501

// LockSchema takes the schema lock in the transaction ctx carries on db (call it
// inside Atomic); it is released when the transaction ends. On SQLite the
// transaction's write lock serializes schema changes already, and LockSchema does
// nothing.
func LockSchema(ctx context.Context, db *sqlx.DB) error {
	if !IsPostgres(db) {
		return nil
	}
	if _, err := Q(ctx, db).ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
		return fmt.Errorf("sqldb: schema lock: %w", err)
	}
	return nil
}

// Columns returns the lower-cased column names of table, read portably from an
// empty result set.
func Columns(ctx context.Context, q sqlx.QueryerContext, table string) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1=0")
	if err != nil {
		return nil, fmt.Errorf("sqldb: columns of %s: %w", table, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("sqldb: columns of %s: %w", table, err)
	}
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[strings.ToLower(n)] = true
	}
	return have, rows.Err()
}
