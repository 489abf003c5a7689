package market

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

func TestBootstrapAndLoadAreIdempotent(t *testing.T) {
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		for range 2 {
			if err := Bootstrap(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range []bool{true, false, false} {
			loaded, err := LoadIfEmpty(ctx, db)
			if err != nil || loaded != want {
				t.Fatalf("LoadIfEmpty #%d = %v, %v; want %v", i+1, loaded, err, want)
			}
		}
		if err := Bootstrap(ctx, db); err != nil {
			t.Fatal(err)
		}
		checkCounts(t, db)
	})
}

// TestConcurrentStart starts two "replicas" on one database at once: each
// bootstraps and loads through its own pool; exactly one loads.
func TestConcurrentStart(t *testing.T) {
	opens := map[string]func(t *testing.T) (*sqlx.DB, *sqlx.DB){
		"sqlite": func(t *testing.T) (*sqlx.DB, *sqlx.DB) {
			p := testenv.SQLitePath(t)
			return testenv.OpenSQLite(t, p), testenv.OpenSQLite(t, p)
		},
		"postgres": func(t *testing.T) (*sqlx.DB, *sqlx.DB) {
			u := testenv.PostgresURL(t)
			return testenv.OpenPostgres(t, u), testenv.OpenPostgres(t, u)
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			a, b := opens[name](t)
			var wg sync.WaitGroup
			results := make([]bool, 2)
			errs := make([]error, 2)
			for i, db := range []*sqlx.DB{a, b} {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if errs[i] = Bootstrap(ctx, db); errs[i] == nil {
						results[i], errs[i] = LoadIfEmpty(ctx, db)
					}
				})
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("errors: %v, %v", errs[0], errs[1])
			}
			if results[0] == results[1] {
				t.Fatalf("loaded = %v; want exactly one replica to load", results)
			}
			checkCounts(t, a)
		})
	}
}

func checkCounts(t *testing.T, db *sqlx.DB) {
	t.Helper()
	ds := mustDataset(t)
	var companies, events, fts int
	if err := db.Get(&companies, "SELECT count(*) FROM market_companies"); err != nil {
		t.Fatal(err)
	}
	if err := db.Get(&events, "SELECT count(*) FROM market_events"); err != nil {
		t.Fatal(err)
	}
	if companies != len(ds.companies) || events != len(ds.events) {
		t.Errorf("database holds %d companies and %d events, want %d and %d", companies, events, len(ds.companies), len(ds.events))
	}
	if !sqldb.IsPostgres(db) {
		if err := db.Get(&fts, "SELECT count(*) FROM market_events_fts"); err != nil {
			t.Fatal(err)
		}
		if fts != len(ds.events) {
			t.Errorf("FTS index holds %d rows, want %d", fts, len(ds.events))
		}
	}
}

// all follows every page of raw (URL parameters) at the given page size and returns
// the ids in order.
func all(t *testing.T, s *Store, raw string, limit int) []int64 {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	v.Set("limit", fmt.Sprint(limit))
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", raw, err)
	}
	var ids []int64
	for range 1000 {
		p, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatalf("Search(%q): %v", raw, err)
		}
		if len(p.Events) > limit {
			t.Fatalf("page of %d events, limit %d", len(p.Events), limit)
		}
		for _, e := range p.Events {
			ids = append(ids, e.ID)
		}
		if p.Next == nil {
			return ids
		}
		if len(p.Events) != limit {
			t.Fatalf("short page (%d of %d) with a next cursor", len(p.Events), limit)
		}
		q.After = p.Next
	}
	t.Fatal("pagination did not end")
	return nil
}

func TestSearch(t *testing.T) {
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		s := NewStore(db)
		text := func(r record) string { return strings.ToLower(r.Title + " " + r.Summary) }
		mar1, apr1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
		pivot := mustDataset(t).events[300] // an instant used as an inclusive bound
		tests := []struct {
			name string
			raw  string
			keep func(record) bool
		}{
			{"everything", "", func(record) bool { return true }},
			{"ticker", "ticker=aapl", func(r record) bool { return r.Ticker == "AAPL" }},
			{"ticker with class", "ticker=BRK.B", func(r record) bool { return r.Ticker == "BRK.B" }},
			{"unknown ticker", "ticker=ZZZZ", func(record) bool { return false }},
			{"type", "type=m_and_a", func(r record) bool { return r.Type == TypeMergers }},
			{"dates, to inclusive of its day", "from=2026-03-01&to=2026-03-31", func(r record) bool {
				return !r.OccurredAt.Before(mar1) && r.OccurredAt.Before(apr1)
			}},
			{"instants, both inclusive", "from=" + pivot.OccurredAt.Add(-time.Hour).Format(time.RFC3339) + "&to=" + pivot.OccurredAt.Format(time.RFC3339),
				func(r record) bool {
					return !r.OccurredAt.Before(pivot.OccurredAt.Add(-time.Hour)) && !r.OccurredAt.After(pivot.OccurredAt)
				}},
			{"from only", "from=2026-11-01", func(r record) bool { return !r.OccurredAt.Before(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) }},
			{"full text", "q=obesity", func(r record) bool { return strings.Contains(text(r), "obesity") }},
			{"full text, stemmed", "q=launches", func(r record) bool { return strings.Contains(text(r), "launch") }},
			{"full text, all terms", "q=delays+launch", func(r record) bool {
				return strings.Contains(text(r), "delay") && strings.Contains(text(r), "launch")
			}},
			{"full text, syntax is inert", `q="withdrew AND (offer`, func(r record) bool {
				return strings.Contains(text(r), "withdrew") && strings.Contains(text(r), "offer") && strings.Contains(text(r), " and ")
			}},
			{"everything combined", "q=results&ticker=MSFT&type=earnings&from=2026-01-01&to=2026-09-30", func(r record) bool {
				return r.Ticker == "MSFT" && r.Type == TypeEarnings && strings.Contains(text(r), "result") &&
					r.OccurredAt.Year() == 2026 && r.OccurredAt.Month() <= 9
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				want := wantIDs(t, tt.keep)
				if tt.name != "unknown ticker" && len(want) == 0 {
					t.Fatal("test selects no events; pick another")
				}
				for _, limit := range []int{7, 100} {
					got := all(t, s, tt.raw, limit)
					if !slices.Equal(got, want) {
						t.Errorf("limit %d: got %d ids %v\nwant %d ids %v", limit, len(got), head(got), len(want), head(want))
					}
				}
			})
		}
	})
}

func head(ids []int64) []int64 { return ids[:min(len(ids), 12)] }

// TestSearchTies checks the cursor inside a group of events that share an instant:
// the next page starts with the group's next id, not after the group.
func TestSearchTies(t *testing.T) {
	ds := mustDataset(t)
	var tie []record
	for i := 1; i < len(ds.events) && tie == nil; i++ {
		if ds.events[i].OccurredAt.Equal(ds.events[i-1].OccurredAt) {
			tie = ds.events[i-1 : i+1]
		}
	}
	if tie == nil {
		t.Fatal("the data set has no two events at one instant")
	}
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		after := Cursor{OccurredAt: tie[1].OccurredAt, ID: tie[1].ID}
		p, err := NewStore(db).Search(context.Background(), Query{Limit: 1, After: &after})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != 1 || p.Events[0].ID != tie[0].ID {
			t.Fatalf("after %+v got %+v, want event %d", after, p.Events, tie[0].ID)
		}
	})
}

// TestSearchUsesIndexes asks each database for its plan and fails on a plan that
// reads the whole events table.
func TestSearchUsesIndexes(t *testing.T) {
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		s := NewStore(db)
		ctx := context.Background()
		conn, err := db.Connx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		explain := "EXPLAIN QUERY PLAN "
		if s.pg {
			explain = "EXPLAIN "
			// The table is small enough that a sequential scan is cheapest; forbid it
			// to see whether an index can serve the query at all.
			if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
				t.Fatal(err)
			}
		}
		// Any of the listed indexes serves; which one is the planner's choice (a type
		// holding a third of the rows may be read off the time index).
		tests := []struct {
			q       Query
			indexes []string
		}{
			{Query{}, []string{"market_events_time"}},
			{Query{Ticker: "AAPL"}, []string{"market_events_ticker"}},
			{Query{Type: TypeFiling}, []string{"market_events_type", "market_events_time"}},
			{Query{Terms: []string{"obesity"}}, []string{"market_events_fts"}},
			{Query{Terms: []string{"launches"}}, []string{"market_events_fts", "market_events_time"}},
		}
		for _, tt := range tests {
			query, args := s.searchSQL(tt.q, 21)
			rows, err := conn.QueryxContext(ctx, explain+query, args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			for rows.Next() {
				cols, err := rows.SliceScan()
				if err != nil {
					t.Fatal(err)
				}
				for i, c := range cols {
					if b, ok := c.([]byte); ok {
						cols[i] = string(b)
					}
				}
				fmt.Fprintln(&plan, cols...)
			}
			rows.Close()
			p := plan.String()
			uses := slices.ContainsFunc(tt.indexes, func(ix string) bool { return strings.Contains(p, ix) })
			if !uses || strings.Contains(p, "Seq Scan on market_events") ||
				strings.Contains(p, "SCAN e\n") || strings.Contains(p, "SCAN market_events\n") {
				t.Errorf("plan for %+v uses none of %v:\n%s", tt.q, tt.indexes, p)
			}
		}
	})
}

func TestEventAndCompanies(t *testing.T) {
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		s := NewStore(db)
		ctx := context.Background()
		ds := mustDataset(t)
		for _, r := range []record{ds.events[0], ds.events[len(ds.events)/2], ds.events[len(ds.events)-1]} {
			e, err := s.Event(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !e.OccurredAt.Equal(r.OccurredAt) {
				t.Errorf("event %d occurred at %v, want %v", r.ID, e.OccurredAt, r.OccurredAt)
			}
			e.OccurredAt = r.OccurredAt
			if e != r.Event {
				t.Errorf("Event(%d) = %+v, want %+v", r.ID, e, r.Event)
			}
		}
		if _, err := s.Event(ctx, 99999999); !errors.Is(err, ErrNotFound) {
			t.Errorf("Event(99999999) error = %v, want ErrNotFound", err)
		}
		c, err := s.Company(ctx, "BRK.B")
		if err != nil || c != (Company{Ticker: "BRK.B", Name: "Berkshire Hathaway Inc.", Sector: "Financials", MarketCapUSD: 1050e9}) {
			t.Errorf("Company(BRK.B) = %+v, %v", c, err)
		}
		if _, err := s.Company(ctx, "ZZZZ"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Company(ZZZZ) error = %v, want ErrNotFound", err)
		}
		for q, want := range map[string][]string{
			"":          tickers(ds.companies),
			"apple":     {"AAPL"},
			"BRK":       {"BRK.B"},
			"motor":     {"F"},
			"  ":        {},
			"100%":      {},
			"_":         {},
			"inc. corp": {},
		} {
			cs, err := s.Companies(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if got := tickers(cs); !slices.Equal(got, want) {
				t.Errorf("Companies(%q) = %v, want %v", q, got, want)
			}
		}
		byTicker, err := s.CompaniesByTicker(ctx, []string{"AAPL", "ZZZZ", "F"})
		if err != nil || len(byTicker) != 2 || byTicker["F"].Name != "Ford Motor Co." {
			t.Errorf("CompaniesByTicker = %v, %v", byTicker, err)
		}
		now := dataEnd
		recent, err := s.Recent(ctx, []string{"AAPL", "F"}, now.Add(-PortfolioWindow), now)
		if err != nil {
			t.Fatal(err)
		}
		want := wantIDs(t, func(r record) bool {
			return (r.Ticker == "AAPL" || r.Ticker == "F") && r.OccurredAt.After(now.Add(-PortfolioWindow)) && !r.OccurredAt.After(now)
		})
		if got := ids(recent); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("Recent = %v, want %v", got, want)
		}
	})
}

func tickers(cs []Company) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Ticker
	}
	slices.Sort(out)
	return out
}

func ids(es []Event) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}
