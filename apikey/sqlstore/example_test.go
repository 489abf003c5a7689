package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	_ "modernc.org/sqlite" // the application, not the store, picks the driver
)

func Example() {
	dir, _ := os.MkdirTemp("", "sqlstore-example")
	defer os.RemoveAll(dir)
	db := sqlx.MustOpen("sqlite", "file:"+filepath.Join(dir, "keys.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	defer db.Close()

	ctx := context.Background()
	s := sqlstore.New(db)
	if err := s.Bootstrap(ctx); err != nil {
		panic(err)
	}
	raw, k, _ := apikey.New("user_42", "team", 250000, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if err := s.Create(ctx, &k); err != nil {
		panic(err)
	}
	got, _ := s.ByHash(ctx, apikey.Hash(raw))
	fmt.Println(got.UserID, got.Plan, got.Status, got.MonthlyCallLimit, got.CreatedAt)

	// Revoke and issue in the caller's transaction, as a billing webhook does.
	tx := db.MustBeginTx(ctx, nil)
	n, _ := s.WithTx(tx).RevokeUser(ctx, "user_42", "downgrade", time.Now())
	_ = tx.Commit()
	fmt.Println(n)
	// Output:
	// user_42 team active 250000 2026-11-27 09:00:00 +0000 UTC
	// 1
}
