package sqlstore_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/apikey/storetest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// open returns a bootstrapped store on db.
func open(t testing.TB, db *sqlx.DB) *sqlstore.Store {
	t.Helper()
	s := sqlstore.New(db)
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	return s
}

func TestConformanceSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) apikey.Store { return open(t, testenv.SQLite(t)) })
}

func TestConformancePostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) apikey.Store { return open(t, testenv.Postgres(t)) })
}
