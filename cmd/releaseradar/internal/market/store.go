package market

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
)

// Store reads companies and events from the database Bootstrap prepared. It selects
// public columns only. Its methods refuse text arguments that are not UTF-8 without
// NUL bytes with an *InputError, without a query, so that SQLite and PostgreSQL
// answer them alike. It is safe for concurrent use.
type Store struct {
	db *sqlx.DB
	pg bool
}

// NewStore returns a Store on db (SQLite or PostgreSQL).
func NewStore(db *sqlx.DB) *Store { return &Store{db: db, pg: sqldb.IsPostgres(db)} }

// Page is one page of a listing, newest first. Next is nil on the last page.
type Page struct {
	Events []Event
	Next   *Cursor
}

// eventColumns are the public columns; internal columns are never selected.
const eventColumns = `e.id, e.ticker, e.type, e.title, e.summary, e.occurred_at, e.surprise, e.surprise_kind, e.source`

type eventRow struct {
	ID           int64      `db:"id"`
	Ticker       string     `db:"ticker"`
	Type         string     `db:"type"`
	Title        string     `db:"title"`
	Summary      string     `db:"summary"`
	OccurredAt   sqldb.Time `db:"occurred_at"`
	Surprise     float64    `db:"surprise"`
	SurpriseKind string     `db:"surprise_kind"`
	Source       string     `db:"source"`
}

func (r eventRow) event() Event {
	return Event{ID: r.ID, Ticker: r.Ticker, Type: r.Type, Title: r.Title, Summary: r.Summary,
		OccurredAt: r.OccurredAt.Time, Surprise: r.Surprise, SurpriseKind: r.SurpriseKind, Source: r.Source}
}

func events(rows []eventRow) []Event {
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out
}

// Search returns the page of events q selects, newest first (occurred_at DESC,
// id DESC). Following Next with the same filters visits every match exactly once,
// even when several events share an instant.
func (s *Store) Search(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	if err := cmp.Or(checkText("q", q.Terms...), checkText("ticker", q.Ticker), checkText("type", q.Type)); err != nil {
		return Page{}, err
	}
	query, args := s.searchSQL(q, limit+1)
	var rows []eventRow
	if err := sqldb.Select(ctx, s.db, &rows, query, args...); err != nil {
		return Page{}, fmt.Errorf("market: search: %w", err)
	}
	var p Page
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		p.Next = &Cursor{OccurredAt: last.OccurredAt.Time, ID: last.ID}
	}
	p.Events = events(rows)
	return p, nil
}

// searchSQL returns the statement, in db's bind style, that selects up to limit
// events matching q.
func (s *Store) searchSQL(q Query, limit int) (string, []any) {
	var where []string
	var args []any
	if len(q.Terms) > 0 {
		if s.pg {
			where = append(where, `e.search_doc @@ plainto_tsquery('english', ?)`)
			args = append(args, strings.Join(q.Terms, " "))
		} else {
			// Every term is letters and digits only (parseTerms), quoted as an FTS5
			// string; juxtaposed strings must all match.
			where = append(where, `e.id IN (SELECT rowid FROM market_events_fts WHERE market_events_fts MATCH ?)`)
			args = append(args, `"`+strings.Join(q.Terms, `" "`)+`"`)
		}
	}
	if q.Ticker != "" {
		where = append(where, "e.ticker = ?")
		args = append(args, q.Ticker)
	}
	if q.Type != "" {
		where = append(where, "e.type = ?")
		args = append(args, q.Type)
	}
	if !q.From.IsZero() {
		where = append(where, "e.occurred_at >= ?")
		args = append(args, sqldb.T(q.From))
	}
	if !q.Before.IsZero() {
		where = append(where, "e.occurred_at < ?")
		args = append(args, sqldb.T(q.Before))
	}
	if q.After != nil {
		where = append(where, "(e.occurred_at < ? OR (e.occurred_at = ? AND e.id < ?))")
		args = append(args, sqldb.T(q.After.OccurredAt), sqldb.T(q.After.OccurredAt), q.After.ID)
	}
	query := "SELECT " + eventColumns + " FROM market_events e"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY e.occurred_at DESC, e.id DESC LIMIT ?"
	return s.db.Rebind(query), append(args, limit)
}

// Event returns the event with id, or ErrNotFound.
func (s *Store) Event(ctx context.Context, id int64) (Event, error) {
	var r eventRow
	err := sqldb.Get(ctx, s.db, &r, s.db.Rebind("SELECT "+eventColumns+" FROM market_events e WHERE e.id = ?"), id)
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("market: event %d: %w", id, err)
	}
	return r.event(), nil
}

// Recent returns the events of the given tickers that occurred in (since, until],
// newest first. It returns an empty slice when tickers is empty.
func (s *Store) Recent(ctx context.Context, tickers []string, since, until time.Time) ([]Event, error) {
	if len(tickers) == 0 {
		return []Event{}, nil
	}
	if err := checkText("ticker", tickers...); err != nil {
		return nil, err
	}
	query, args, err := sqlx.In("SELECT "+eventColumns+` FROM market_events e
WHERE e.ticker IN (?) AND e.occurred_at > ? AND e.occurred_at <= ?
ORDER BY e.occurred_at DESC, e.id DESC`, tickers, sqldb.T(since), sqldb.T(until))
	if err != nil {
		return nil, fmt.Errorf("market: recent events: %w", err)
	}
	var rows []eventRow
	if err := sqldb.Select(ctx, s.db, &rows, s.db.Rebind(query), args...); err != nil {
		return nil, fmt.Errorf("market: recent events: %w", err)
	}
	return events(rows), nil
}

// Companies returns the companies whose ticker or name contains q (case-insensitive;
// all when q is empty), by ticker.
func (s *Store) Companies(ctx context.Context, q string) ([]Company, error) {
	if err := checkText("q", q); err != nil {
		return nil, err
	}
	query := "SELECT ticker, name, sector, market_cap_usd FROM market_companies"
	var args []any
	if q != "" {
		like := "%" + likeEscaper.Replace(strings.ToLower(q)) + "%"
		query += ` WHERE lower(ticker) LIKE ? ESCAPE '\' OR lower(name) LIKE ? ESCAPE '\'`
		args = append(args, like, like)
	}
	cs := []Company{}
	if err := sqldb.Select(ctx, s.db, &cs, s.db.Rebind(query+" ORDER BY ticker"), args...); err != nil {
		return nil, fmt.Errorf("market: companies: %w", err)
	}
	return cs, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Company returns the company listed as ticker (exact, upper case), or ErrNotFound.
func (s *Store) Company(ctx context.Context, ticker string) (Company, error) {
	if err := checkText("ticker", ticker); err != nil {
		return Company{}, err
	}
	var c Company
	err := sqldb.Get(ctx, s.db, &c, s.db.Rebind(
		"SELECT ticker, name, sector, market_cap_usd FROM market_companies WHERE ticker = ?"), ticker)
	if errors.Is(err, sql.ErrNoRows) {
		return Company{}, ErrNotFound
	}
	if err != nil {
		return Company{}, fmt.Errorf("market: company %s: %w", ticker, err)
	}
	return c, nil
}

// CompaniesByTicker returns the listed companies among tickers, keyed by ticker;
// unknown tickers are absent from the map.
func (s *Store) CompaniesByTicker(ctx context.Context, tickers []string) (map[string]Company, error) {
	out := make(map[string]Company, len(tickers))
	if len(tickers) == 0 {
		return out, nil
	}
	if err := checkText("ticker", tickers...); err != nil {
		return nil, err
	}
	query, args, err := sqlx.In("SELECT ticker, name, sector, market_cap_usd FROM market_companies WHERE ticker IN (?)", tickers)
	if err != nil {
		return nil, fmt.Errorf("market: companies: %w", err)
	}
	var cs []Company
	if err := sqldb.Select(ctx, s.db, &cs, s.db.Rebind(query), args...); err != nil {
		return nil, fmt.Errorf("market: companies: %w", err)
	}
	for _, c := range cs {
		out[c.Ticker] = c
	}
	return out, nil
}
