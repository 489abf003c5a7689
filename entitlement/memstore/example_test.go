package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
)

func Example() {
	ctx := context.Background()
	s := memstore.New()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

	// An event ID is recorded once, however often Stripe delivers it.
	for range 2 {
		_ = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
			first, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_1", Type: "invoice.paid", ReceivedAt: now})
			fmt.Println("first delivery:", first)
			return err
		})
	}

	// A failed update leaves nothing behind.
	err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "user_42", BoundAt: now}); err != nil {
			return err
		}
		return errors.New("something failed late")
	})
	fmt.Println(err)
	_ = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		_, err := tx.Customer(ctx, "cus_1")
		fmt.Println(errors.Is(err, entitlement.ErrNotFound))
		return nil
	})
	// Output:
	// first delivery: true
	// first delivery: false
	// something failed late
	// true
}
