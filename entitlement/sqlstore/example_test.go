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
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/sqlstore"
	_ "modernc.org/sqlite" // the application, not the store, picks the driver
)

func Example() {
	dir, _ := os.MkdirTemp("", "entitlement-example")
	defer os.RemoveAll(dir)
	db := sqlx.MustOpen("sqlite", "file:"+filepath.Join(dir, "billing.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	defer db.Close()

	ctx := context.Background()
	s := sqlstore.New(db)
	if err := s.Bootstrap(ctx); err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	// The event, the entitlement and the key commit together, or not at all.
	err := s.Update(ctx, func(tx entitlement.Tx) error {
		if _, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_1", Type: "invoice.paid", ReceivedAt: now}); err != nil {
			return err
		}
		_, k, _ := apikey.New("user_42", "pro", 10000, now)
		if err := tx.Keys().Create(ctx, &k); err != nil {
			return err
		}
		if err := tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_42", Plan: "pro", KeyID: k.ID, Source: entitlement.SourceStripe, UpdatedAt: now}); err != nil {
			return err
		}
		return errors.New("something failed late")
	})
	keys, _ := s.Keys().ListByUser(ctx, "user_42")
	fmt.Println(err, len(keys))
	// Output: something failed late 0
}
