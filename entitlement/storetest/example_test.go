package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/entitlement/storetest"
)

// countingStore is an entitlement.Store of an application's own: it wraps another
// store and counts the updates that commit and those that fail, for its metrics.
type countingStore struct {
	entitlement.Store
	committed, failed atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, fn func(ctx context.Context, tx entitlement.Tx) error) error {
	err := s.Store.Update(ctx, fn)
	if err != nil {
		s.failed.Add(1)
	} else {
		s.committed.Add(1)
	}
	return err
}

// testConformance is the store's conformance test. Its _test.go file calls it
// from a test function:
//
//	func TestConformance(t *testing.T) { testConformance(t) }
//
// Run calls the constructor once per case, for an empty store each time.
func testConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) entitlement.Store {
		return &countingStore{Store: memstore.New()}
	})
}

// A store that passes the suite keeps the contract of entitlement.Store, so the
// Service can run on it: here an instrumented store.
func ExampleRun() {
	s := &countingStore{Store: memstore.New()}
	ctx := context.Background()
	_ = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		_, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_1", Type: "invoice.paid", ReceivedAt: time.Now()})
		return err
	})
	_ = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		return errors.New("something failed late")
	})
	fmt.Println("committed:", s.committed.Load(), "failed:", s.failed.Load())
	// Output: committed: 1 failed: 1
}
