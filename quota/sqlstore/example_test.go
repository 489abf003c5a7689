package sqlstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/sqlstore"
	_ "modernc.org/sqlite" // the application, not the store, picks the driver
)

// openSQLite opens a SQLite file with the settings the package documents.
func openSQLite(path string) *sqlx.DB {
	db, err := sqlx.Open("sqlite", "file:"+path+
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	return db
}

// A table of its own: Bootstrap creates it with the configured names, and Put
// creates each quota's row.
func ExampleStore() {
	dir, err := os.MkdirTemp("", "quota-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db := openSQLite(filepath.Join(dir, "app.db"))
	defer db.Close()

	ctx := context.Background()
	store := sqlstore.New(db, sqlstore.Config{
		Table:   "quotas",
		Columns: sqlstore.Columns{ID: "key_id", Limit: "calls_per_cycle"},
	})
	if err := store.Bootstrap(ctx); err != nil {
		log.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := store.Put(ctx, "key-1", 3, start); err != nil {
		log.Fatal(err)
	}

	granted, u, err := store.Reserve(ctx, "key-1", 5, start.Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("granted", granted, "of 5; used", u.Used, "of", u.Limit)
	_, err = quota.Consume(ctx, store, "key-1", start.Add(2*time.Hour))
	fmt.Println(err)
	// Output:
	// granted 3 of 5; used 3 of 3
	// quota: monthly API quota exceeded
}

// On the default api_keys table the key store creates the rows (here a plain
// INSERT stands in for apikey/sqlstore) and Put sets the quota of an existing
// key; the gate does both in one transaction when it issues a key.
func ExampleStore_keysTable() {
	dir, err := os.MkdirTemp("", "quota-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db := openSQLite(filepath.Join(dir, "app.db"))
	defer db.Close()

	ctx := context.Background()
	// What the key store's Bootstrap and Create do.
	for _, q := range []string{
		`CREATE TABLE api_keys (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE)`,
		`INSERT INTO api_keys (id, user_id, key_hash) VALUES ('key-1', 'user-1', 'hash-1')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			log.Fatal(err)
		}
	}

	store := sqlstore.New(db, sqlstore.Config{})
	if err := store.Bootstrap(ctx); err != nil { // adds the quota columns
		log.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := store.Put(ctx, "key-1", 1000, start); err != nil {
		log.Fatal(err)
	}
	u, err := quota.Consume(ctx, store, "key-1", start.Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("used", u.Used, "of", u.Limit, "until", u.Reset.Format(time.DateOnly))

	// A quota whose key does not exist cannot be put on the shared table.
	fmt.Println(store.Put(ctx, "key-2", 1000, start) != nil)
	// Output:
	// used 1 of 1000 until 2026-01-31
	// true
}
