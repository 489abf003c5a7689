package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/releaseradar/tollgate/internal/sqldb"
)

// Bootstrap prepares the store's table. It creates the table if it is missing
// (the ID column as TEXT PRIMARY KEY plus the quota columns) and otherwise adds
// only the quota columns it lacks: the rows that were there get Config.DefaultLimit
// calls a cycle, nothing used, and a cycle starting now. On PostgreSQL it widens an
// existing 32-bit limit, used or granted column to BIGINT (SQLite's INTEGER is
// 64-bit already), so limits above 2³¹−1 work. It never touches another column.
//
// Bootstrap is idempotent and safe to run from several processes at once: it runs
// in one transaction (the one ctx carries, if any), under an advisory lock on
// PostgreSQL. On the default api_keys table, run the key store's Bootstrap first,
// and run both before the stores' first use.
func (s *Store) Bootstrap(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	err := sqldb.Atomic(ctx, s.db, s.bootstrap)
	if err != nil {
		return fmt.Errorf("quota/sqlstore: bootstrap %s: %w", s.cfg.Table, err)
	}
	return nil
}

// column is one quota column: its name, its definitions on each database, and
// what the rows that exist when it is added get.
type column struct {
	name       string
	pg, sqlite string
	backfill   any // nil: the column's default
	widen      bool
}

func (s *Store) bootstrap(ctx context.Context) error {
	q := sqldb.Q(ctx, s.db)
	pg := sqldb.IsPostgres(s.db)
	if err := sqldb.LockSchema(ctx, s.db); err != nil {
		return err
	}
	c := s.cfg.Columns
	// A cycle start no Put has set is long past: the first reservation opens a
	// cycle (when the limit allows one).
	const never = `'1970-01-01 00:00:00'`
	var limitBackfill any
	if s.cfg.DefaultLimit != 0 {
		limitBackfill = s.cfg.DefaultLimit
	}
	cols := []column{
		{name: c.Limit, pg: "BIGINT NOT NULL DEFAULT 0", sqlite: "INTEGER NOT NULL DEFAULT 0", backfill: limitBackfill, widen: true},
		{name: c.Used, pg: "BIGINT NOT NULL DEFAULT 0", sqlite: "INTEGER NOT NULL DEFAULT 0", widen: true},
		{name: c.CycleStart, pg: "TIMESTAMP NOT NULL DEFAULT " + never, sqlite: "TIMESTAMP NOT NULL DEFAULT " + never, backfill: sqldb.T(time.Now())},
		{name: c.Granted, pg: "BIGINT NOT NULL DEFAULT 0", sqlite: "INTEGER NOT NULL DEFAULT 0", widen: true},
	}
	def := func(col column) string {
		if pg {
			return col.pg
		}
		return col.sqlite
	}

	t := quoted(s.cfg.Table)
	create := []string{quoted(c.ID) + " TEXT PRIMARY KEY"}
	for _, col := range cols {
		create = append(create, quoted(col.name)+" "+def(col))
	}
	if _, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+t+" (\n\t"+strings.Join(create, ",\n\t")+"\n)"); err != nil {
		return fmt.Errorf("create: %w", err)
	}

	j := quoted(s.cfg.Journal)
	if _, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+j+` (
	token TEXT PRIMARY KEY,
	quota_id TEXT NOT NULL,
	calls BIGINT NOT NULL,
	created_at TIMESTAMP NOT NULL
)`); err != nil {
		return fmt.Errorf("create journal: %w", err)
	}
	if _, err := q.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS "+quoted(s.cfg.Journal+"_created")+" ON "+j+" (created_at)"); err != nil {
		return fmt.Errorf("index journal: %w", err)
	}

	have, err := columnTypes(ctx, q, t)
	if err != nil {
		return err
	}
	if _, ok := have[c.ID]; !ok {
		return fmt.Errorf("the table has no column %q for the quota ID (Config.Columns.ID)", c.ID)
	}
	for _, col := range cols {
		typ, ok := have[col.name]
		switch {
		case !ok:
			if _, err := q.ExecContext(ctx, "ALTER TABLE "+t+" ADD COLUMN "+quoted(col.name)+" "+def(col)); err != nil {
				return fmt.Errorf("add column %s: %w", col.name, err)
			}
			if col.backfill == nil {
				continue
			}
			if _, err := q.ExecContext(ctx, s.db.Rebind("UPDATE "+t+" SET "+quoted(col.name)+" = ?"), col.backfill); err != nil {
				return fmt.Errorf("fill column %s: %w", col.name, err)
			}
		case pg && col.widen && narrow(typ):
			if _, err := q.ExecContext(ctx, "ALTER TABLE "+t+" ALTER COLUMN "+quoted(col.name)+" TYPE BIGINT"); err != nil {
				return fmt.Errorf("widen column %s to BIGINT: %w", col.name, err)
			}
		}
	}
	return nil
}

// narrow reports whether a PostgreSQL column of the driver's type name holds less
// than 64 bits of integer.
func narrow(typ string) bool {
	switch strings.ToUpper(typ) {
	case "INT2", "INT4", "SMALLINT", "INTEGER", "INT":
		return true
	}
	return false
}

// columnTypes returns the columns of table (a quoted name) with their database
// type names, read portably from an empty result set.
func columnTypes(ctx context.Context, q sqldb.Querier, table string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1=0")
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	have := make(map[string]string, len(types))
	for _, ct := range types {
		have[strings.ToLower(ct.Name())] = ct.DatabaseTypeName()
	}
	return have, rows.Err()
}
