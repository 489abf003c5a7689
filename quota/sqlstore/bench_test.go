package sqlstore_test

import (
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/quota/storetest"
)

func BenchmarkConsume(b *testing.B) {
	backends := []struct {
		name string
		open func(testing.TB) *sqlx.DB
	}{
		{"sqlite", testenv.SQLite},
		{"postgres", testenv.Postgres},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			s := sqlstore.New(db, sqlstore.Config{})
			if err := s.Bootstrap(b.Context()); err != nil {
				b.Fatal(err)
			}
			storetest.Bench(b, s, func(id string, limit int64, cycleStart time.Time) {
				insertKey(b, db, id, limit, cycleStart)
			})
		})
	}
}
