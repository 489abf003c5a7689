package sqlstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
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
	db, err := sqlx.Open("sqlite", "file:"+filepath.Join(dir, "keys.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	store := sqlstore.New(db, sqlstore.Config{})
	if err := store.Bootstrap(ctx); err != nil {
		log.Fatal(err)
	}
	// Keys are issued by apikey/sqlstore on the same table.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, k, err := apikey.New("user-1", "pro", 3, start)
	if err != nil {
		log.Fatal(err)
	}
	if err := aksql.New(db).Create(ctx, &k); err != nil {
		log.Fatal(err)
	}

	granted, u, err := store.Reserve(ctx, k.ID, 5, start.Add(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("granted", granted, "of 5; used", u.Used, "of", u.Limit)
	_, err = quota.Consume(ctx, store, k.ID, start.Add(2*time.Hour))
	fmt.Println(err)
	// Output:
	// granted 3 of 5; used 3 of 3
	// quota: monthly API quota exceeded
}
