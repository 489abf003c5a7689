package market

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
)

// tables returns the schema for db's dialect. Full-text search is an FTS5 table kept
// in step by triggers on SQLite, and a GIN-indexed tsvector column on PostgreSQL,
// generated from title and summary and stored: matching a stored vector is cheap,
// while an expression index leaves the planner recomputing to_tsvector for every
// row it filters (about 20 ms a search here when it walks the time index).
func tables(pg bool) []sqldb.Table {
	idType := "INTEGER" // SQLite: the rowid alias, which FTS5 content_rowid reads best
	searchDoc := ""
	if pg {
		idType = "BIGINT"
		searchDoc = ",\n\tsearch_doc TSVECTOR GENERATED ALWAYS AS (" + ftsExprPG + ") STORED"
	}
	events := sqldb.Table{
		Name: "market_events",
		Create: `CREATE TABLE IF NOT EXISTS market_events (
	id ` + idType + ` PRIMARY KEY,
	ticker TEXT NOT NULL REFERENCES market_companies (ticker),
	type TEXT NOT NULL,
	title TEXT NOT NULL,
	summary TEXT NOT NULL,
	occurred_at TIMESTAMP NOT NULL,
	surprise DOUBLE PRECISION NOT NULL DEFAULT 0,
	surprise_kind TEXT NOT NULL DEFAULT 'sentiment',
	source TEXT NOT NULL DEFAULT '',
	ingest_id TEXT NOT NULL DEFAULT '',
	raw_source_url TEXT NOT NULL DEFAULT '',
	analyst_notes TEXT NOT NULL DEFAULT '',
	internal_confidence DOUBLE PRECISION NOT NULL DEFAULT 0` + searchDoc + `
)`,
		Indexes: []string{
			`CREATE INDEX IF NOT EXISTS market_events_time ON market_events (occurred_at DESC, id DESC)`,
			`CREATE INDEX IF NOT EXISTS market_events_ticker ON market_events (ticker, occurred_at DESC, id DESC)`,
			`CREATE INDEX IF NOT EXISTS market_events_type ON market_events (type, occurred_at DESC, id DESC)`,
		},
	}
	if pg {
		events.Indexes = append(events.Indexes,
			`CREATE INDEX IF NOT EXISTS market_events_fts ON market_events USING GIN (search_doc)`)
	}
	ts := []sqldb.Table{
		{
			Name: "market_companies",
			Create: `CREATE TABLE IF NOT EXISTS market_companies (
	ticker TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	sector TEXT NOT NULL,
	market_cap_usd BIGINT NOT NULL
)`,
		},
		events,
		{
			Name: "market_dataset",
			Create: `CREATE TABLE IF NOT EXISTS market_dataset (
	name TEXT PRIMARY KEY,
	events INTEGER NOT NULL,
	loaded_at TIMESTAMP NOT NULL
)`,
		},
	}
	if !pg {
		ts = append(ts, sqldb.Table{
			Name: "market_events_fts",
			Create: `CREATE VIRTUAL TABLE IF NOT EXISTS market_events_fts USING fts5(
	title, summary, content='market_events', content_rowid='id', tokenize='porter unicode61')`,
			Indexes: []string{
				`CREATE TRIGGER IF NOT EXISTS market_events_fts_insert AFTER INSERT ON market_events BEGIN
	INSERT INTO market_events_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END`,
				`CREATE TRIGGER IF NOT EXISTS market_events_fts_delete AFTER DELETE ON market_events BEGIN
	INSERT INTO market_events_fts (market_events_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
END`,
				`CREATE TRIGGER IF NOT EXISTS market_events_fts_update AFTER UPDATE ON market_events BEGIN
	INSERT INTO market_events_fts (market_events_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
	INSERT INTO market_events_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END`,
			},
		})
	}
	return ts
}

// ftsExprPG is the document of an event on PostgreSQL, stored as search_doc.
const ftsExprPG = `to_tsvector('english', title || ' ' || summary)`

// Bootstrap creates the market tables, indexes and full-text support if missing. It
// is idempotent and safe to run from several processes at once. On SQLite it fails
// with a clear error if the linked SQLite lacks FTS5 (modernc.org/sqlite has it).
func Bootstrap(ctx context.Context, db *sqlx.DB) error {
	pg := sqldb.IsPostgres(db)
	if !pg {
		var fts5 int
		err := sqldb.RetryBusy(ctx, func() error {
			return db.GetContext(ctx, &fts5, `SELECT sqlite_compileoption_used('ENABLE_FTS5')`)
		})
		if err != nil {
			return fmt.Errorf("market: bootstrap: %w", err)
		}
		if fts5 != 1 {
			return fmt.Errorf("market: bootstrap: this SQLite build lacks FTS5, which event search needs")
		}
	}
	if err := sqldb.Bootstrap(ctx, db, tables(pg)...); err != nil {
		return fmt.Errorf("market: %w", err)
	}
	return nil
}

// LoadIfEmpty loads the embedded data set unless it was loaded before, in one
// transaction, and reports whether it loaded it. The first statement claims a marker
// row (INSERT … ON CONFLICT DO NOTHING on market_dataset), so when several replicas
// start at once exactly one loads and the others wait for its commit, see the
// marker and return false. Call Bootstrap first.
func LoadIfEmpty(ctx context.Context, db *sqlx.DB) (loaded bool, err error) {
	ds, err := dataset()
	if err != nil {
		return false, err
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("market: load: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, tx.Rebind(
		`INSERT INTO market_dataset (name, events, loaded_at) VALUES ('sample', ?, ?) ON CONFLICT (name) DO NOTHING`),
		len(ds.events), sqldb.T(time.Now()))
	if err != nil {
		return false, fmt.Errorf("market: load: claim: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("market: load: claim: %w", err)
	} else if n == 0 {
		return false, nil // loaded before, or by another process that just committed
	}
	if err := insertAll(ctx, tx, `INSERT INTO market_companies (ticker, name, sector, market_cap_usd)
VALUES (?, ?, ?, ?) ON CONFLICT (ticker) DO NOTHING`, ds.companies, func(c Company) []any {
		return []any{c.Ticker, c.Name, c.Sector, c.MarketCapUSD}
	}); err != nil {
		return false, fmt.Errorf("market: load companies: %w", err)
	}
	if err := insertAll(ctx, tx, `INSERT INTO market_events (id, ticker, type, title, summary, occurred_at,
	surprise, surprise_kind, source, ingest_id, raw_source_url, analyst_notes, internal_confidence)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, ds.events, func(e record) []any {
		return []any{e.ID, e.Ticker, e.Type, e.Title, e.Summary, sqldb.T(e.OccurredAt),
			e.Surprise, e.SurpriseKind, e.Source, e.IngestID, e.RawSourceURL, e.AnalystNotes, e.InternalConfidence}
	}); err != nil {
		return false, fmt.Errorf("market: load events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("market: load: commit: %w", err)
	}
	// Give the planner statistics now rather than at the next autovacuum.
	analyze := "ANALYZE"
	if sqldb.IsPostgres(db) {
		analyze = "ANALYZE market_companies, market_events"
	}
	if _, err := db.ExecContext(ctx, analyze); err != nil {
		return true, fmt.Errorf("market: load: analyze: %w", err)
	}
	return true, nil
}

// insertAll runs the single-row INSERT query once per item through one prepared
// statement.
func insertAll[T any](ctx context.Context, tx *sqlx.Tx, query string, items []T, args func(T) []any) error {
	stmt, err := tx.PreparexContext(ctx, tx.Rebind(strings.TrimSpace(query)))
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, it := range items {
		if _, err := stmt.ExecContext(ctx, args(it)...); err != nil {
			return err
		}
	}
	return nil
}
