package market

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// Loading the data set into SQLite takes seconds under -race (the pure-Go SQLite is
// instrumented too), so most tests copy one database file loaded once per run.
var sqliteTemplate struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sqliteTemplate.dir != "" {
		os.RemoveAll(sqliteTemplate.dir)
	}
	os.Exit(code)
}

func buildSQLiteTemplate() (dir, path string, err error) {
	dir, err = os.MkdirTemp("", "market-sqlite-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "loaded.db")
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(path))
	if err != nil {
		return dir, "", err
	}
	defer db.Close()
	ctx := context.Background()
	if err := Bootstrap(ctx, db); err != nil {
		return dir, "", err
	}
	if loaded, err := LoadIfEmpty(ctx, db); err != nil || !loaded {
		return dir, "", fmt.Errorf("LoadIfEmpty = %v, %v", loaded, err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return dir, "", err
	}
	return dir, path, db.Close()
}

// loadedSQLite returns a handle on a private copy of a loaded SQLite database.
func loadedSQLite(t testing.TB) *sqlx.DB {
	t.Helper()
	tpl := &sqliteTemplate
	tpl.once.Do(func() { tpl.dir, tpl.path, tpl.err = buildSQLiteTemplate() })
	if tpl.err != nil {
		t.Fatalf("loaded SQLite template: %v", tpl.err)
	}
	path := testenv.SQLitePath(t)
	if err := copyFile(path, tpl.path); err != nil {
		t.Fatal(err)
	}
	return testenv.OpenSQLite(t, path)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// loadedDBs runs f on a loaded SQLite database and on a freshly loaded PostgreSQL
// schema (skipped without TOLLGATE_TEST_POSTGRES_URL, failed under CI=true).
func loadedDBs(t *testing.T, f func(t *testing.T, db *sqlx.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, loadedSQLite(t)) })
	t.Run("postgres", func(t *testing.T) {
		db := testenv.Postgres(t)
		load(t, db)
		f(t, db)
	})
}
