package sqlstore_test

import (
	"context"
	"errors"
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
	db := sqlx.MustOpen("sqlite", "file:"+filepath.Join(dir, "keys.db")+
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate")
	defer db.Close()

	ctx := context.Background()
	s := sqlstore.New(db, sqlstore.Config{})
	if err := s.Bootstrap(ctx); err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	raw, k, _ := apikey.New("acme_", "user_42", "gold", now)
	if err := s.Create(ctx, &k); err != nil {
		panic(err)
	}
	got, _ := s.ByHash(ctx, apikey.Hash(raw))
	fmt.Println(got.UserID, got.Plan, got.Status, got.QuotaID == got.ID, got.CreatedAt)

	// Replace the key in one transaction, as a billing upgrade does: the methods
	// called with Atomic's ctx run in it, and an error rolls them all back.
	upgrade := func(fail bool) error {
		return s.Atomic(ctx, func(ctx context.Context) error {
			if _, err := s.RevokeUser(ctx, "user_42", "upgrade", now); err != nil {
				return err
			}
			_, k, _ := apikey.New("acme_", "user_42", "platinum", now.Add(time.Hour))
			if err := s.Create(ctx, &k); err != nil {
				return err
			}
			if fail { // say, the quota could not be set
				return errors.New("quota unavailable")
			}
			return nil
		})
	}
	fmt.Println(upgrade(true))
	keys, _ := s.ListByUser(ctx, "user_42")
	fmt.Println(len(keys), keys[0].Plan, keys[0].Status)

	fmt.Println(upgrade(false))
	keys, _ = s.ListByUser(ctx, "user_42")
	fmt.Println(len(keys), keys[0].Plan, keys[0].Status, keys[1].Status)
	// Output:
	// user_42 gold active true 2026-11-27 09:00:00 +0000 UTC
	// quota unavailable
	// 1 gold active
	// <nil>
	// 2 platinum active revoked
}
