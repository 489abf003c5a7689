package market

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/testenv"
)

func benchDB(b *testing.B) map[string]*sqlx.DB {
	dbs := map[string]*sqlx.DB{"sqlite": loadedSQLite(b)}
	if testenvHasPostgres() {
		dbs["postgres"] = testenv.Postgres(b)
		load(b, dbs["postgres"])
	}
	return dbs
}

func BenchmarkSearch(b *testing.B) {
	queries := map[string]Query{
		"newest":        {Limit: 20},
		"ticker":        {Ticker: "AAPL", Limit: 20},
		"fulltext":      {Terms: []string{"launches"}, Limit: 20},
		"fulltext+type": {Terms: []string{"results"}, Type: TypeEarnings, Limit: 100},
	}
	for backend, db := range benchDB(b) {
		s := NewStore(db)
		for name, q := range queries {
			b.Run(backend+"/"+name, func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Search(context.Background(), q); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPublicFeedCached measures the handler when the feed is in memory, the
// case every request but one per 120 s hits.
func BenchmarkPublicFeedCached(b *testing.B) {
	db := loadedSQLite(b)
	a := NewAPI(db, Config{})
	req := httptest.NewRequest(http.MethodGet, "/events/public", nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			a.PublicFeed(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatal(rec.Code)
			}
		}
	})
}

func BenchmarkScore(b *testing.B) {
	ds := mustDataset(b)
	for b.Loop() {
		for _, r := range ds.events {
			Score(r.Event, 100e9, dataEnd)
		}
	}
}

func testenvHasPostgres() bool { return os.Getenv(testenv.PostgresEnv) != "" }
