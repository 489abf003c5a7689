package memstore_test

import (
	"context"
	"fmt"
	"time"

	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
)

func Example() {
	ctx := context.Background()
	s := memstore.New(apimem.New())
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for range 2 {
		_ = s.Update(ctx, func(tx entitlement.Tx) error {
			first, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_1", Type: "invoice.paid", ReceivedAt: now})
			fmt.Println("first delivery:", first)
			return err
		})
	}
	_ = s.Update(ctx, func(tx entitlement.Tx) error {
		c, _ := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "user_42", BoundAt: now})
		fmt.Println(c.ID, "→", c.UserID)
		return nil
	})
	// Output:
	// first delivery: true
	// first delivery: false
	// cus_1 → user_42
}
