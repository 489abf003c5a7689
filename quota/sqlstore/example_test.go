package sqlstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/sqlstore"
	_ "modernc.org/sqlite" // the application, not the store, picks the driver
)

func ExampleStore() {
	dir, err := os.MkdirTemp("", "quota-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(filepath.Join(dir, "keys.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	store := sqlstore.New(db, sqlstore.Config{})
	if err := store.Bootstrap(ctx); err != nil {
		log.Fatal(err)
	}
	// Keys are issued by apikey/sqlstore; a bare row stands in for one here.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = db.Exec(`INSERT INTO api_keys (id, user_id, key_hash, monthly_call_limit, cycle_start)
		VALUES ('key-1', 'user-1', 'hash-1', 3, ?)`, sqldb.T(start))
	if err != nil {
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
