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
	apisql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/sqlstore"
	_ "modernc.org/sqlite" // the application, not the store, picks the driver
)

// An update's context carries its transaction: the key store on the same
// database, called with it, commits or rolls back with the event.
func Example() {
	dir, _ := os.MkdirTemp("", "entitlement-example")
	defer os.RemoveAll(dir)
	dsn := "file:" + filepath.Join(dir, "billing.db") +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db := sqlx.MustOpen("sqlite", dsn)
	defer db.Close()

	ctx := context.Background()
	s := sqlstore.New(db)
	keys := apisql.New(db, apisql.Config{})
	for _, b := range []interface{ Bootstrap(context.Context) error }{keys, s} {
		if err := b.Bootstrap(ctx); err != nil {
			panic(err)
		}
	}
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_1", Type: "invoice.paid", ReceivedAt: now}); err != nil {
			return err
		}
		_, k, err := apikey.New(apikey.DefaultPrefix, "user_42", "gold", now)
		if err != nil {
			return err
		}
		if err := keys.Create(ctx, &k); err != nil { // ctx: the update's transaction
			return err
		}
		if err := tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_42", Plan: "gold", KeyID: k.ID, Source: entitlement.SourceStripe, UpdatedAt: now}); err != nil {
			return err
		}
		return errors.New("something failed late")
	})
	issued, _ := keys.ListByUser(ctx, "user_42")
	fmt.Println(err, len(issued))
	// Output: something failed late 0
}
