// Package storetest is the conformance suite that every entitlement.Store (and
// every entitlement.MeterLedger) must pass.
//
// A store's test calls Run with a constructor of empty stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) entitlement.Store { return memstore.New() })
//	}
//
// The suite checks what the Service relies on: an event ID is recorded once, also
// under concurrent deliveries; updates are serialized and all-or-nothing; the
// first customer binding wins; records (feature sets among them) round-trip in
// UTC at microsecond precision; a sealed key is taken exactly once; fn's context derives from
// Update's; a canceled context commits nothing; pruning forgets old events only.
// Nothing in it skips: a store that cannot pass a case does not meet the contract.
//
// A store that is also an entitlement.MeterLedger (the usage ledger and its meter
// reports) runs RunLedger beside it:
//
//	func TestLedgerConformance(t *testing.T) {
//		storetest.RunLedger(t, func(t *testing.T) entitlement.MeterLedger { return memstore.New() })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
)

// t0 is the suite's clock: nanoseconds and a zone other than UTC, so that every
// store must normalise what it is given.
var t0 = time.Date(2026, 11, 27, 9, 30, 15, 123456789, time.FixedZone("CET", 3600))

// us returns t as every store reports it: UTC, microsecond precision.
func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Run runs the suite as subtests of t. newStore returns an empty, ready store
// (bootstrapped, for SQL stores); it is called once per subtest, and the subtests
// run in parallel, each on its own store.
func Run(t *testing.T, newStore func(t *testing.T) entitlement.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s entitlement.Store)
	}{
		{"MarkProcessedOnce", testMarkProcessed},
		{"ConcurrentMarkProcessed", testConcurrentMark},
		{"BindCustomerKeepsFirst", testBindCustomer},
		{"SubscriptionRoundTrip", testSubscriptionRoundTrip},
		{"SubscriptionsOfCustomer", testSubscriptionsOf},
		{"FeatureSetRoundTrip", testFeatureSet},
		{"EntitlementRoundTrip", testEntitlement},
		{"SealedKeyTakenOnce", testSealed},
		{"ConcurrentTakeSealed", testConcurrentTakeSealed},
		{"FailedUpdateChangesNothing", testRollback},
		{"UpdatesAreSerialized", testSerialized},
		{"ContextReachesFn", testContext},
		{"PruneEvents", testPrune},
		{"CanceledContext", testCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, newStore(t))
		})
	}
}

var errBoom = errors.New("storetest: boom")

// update runs fn in a transaction and fails the test on an error.
func update(t *testing.T, s entitlement.Store, fn func(ctx context.Context, tx entitlement.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func testMarkProcessed(t *testing.T, s entitlement.Store) {
	e := entitlement.Event{ID: "evt_1", Type: "invoice.paid", Created: t0, ReceivedAt: t0}
	for i, want := range []bool{true, false, false} {
		update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
			first, err := tx.MarkProcessed(ctx, e)
			if err != nil {
				return err
			}
			if first != want {
				t.Errorf("MarkProcessed #%d = %v, want %v", i+1, first, want)
			}
			return nil
		})
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		first, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_2", Type: "invoice.paid", ReceivedAt: t0})
		if err == nil && !first {
			t.Error("another event ID was reported as processed")
		}
		return err
	})
}

func testConcurrentMark(t *testing.T, s entitlement.Store) {
	const n = 8
	var firsts atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Update(context.Background(), func(ctx context.Context, tx entitlement.Tx) error {
				first, err := tx.MarkProcessed(context.Background(), entitlement.Event{ID: "evt_same", Type: "x", ReceivedAt: t0})
				if first {
					firsts.Add(1)
				}
				return err
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if got := firsts.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent transactions saw the event first, want 1", got, n)
	}
}

func testBindCustomer(t *testing.T, s entitlement.Store) {
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.Customer(ctx, "cus_a"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("Customer(unbound) error = %v, want ErrNotFound", err)
		}
		none, err := tx.CustomersOf(ctx, "user_1")
		if err != nil || none == nil || len(none) != 0 {
			t.Errorf("CustomersOf(nobody) = %#v, %v; want an empty slice", none, err)
		}
		c, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_b", UserID: "user_1", BoundAt: t0})
		if err != nil {
			return err
		}
		if want := (entitlement.Customer{ID: "cus_b", UserID: "user_1", BoundAt: us(t0)}); c != want {
			t.Errorf("BindCustomer = %+v, want %+v", c, want)
		}
		_, err = tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_a", UserID: "user_1", BoundAt: t0})
		return err
	})
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		c, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_a", UserID: "user_2", BoundAt: t0.Add(time.Hour)})
		if err != nil {
			return err
		}
		if c.UserID != "user_1" || !c.BoundAt.Equal(us(t0)) {
			t.Errorf("rebinding returned %+v, want the first binding to user_1", c)
		}
		got, err := tx.Customer(ctx, "cus_a")
		if err != nil || got.UserID != "user_1" {
			t.Errorf("Customer(cus_a) = %+v, %v; want user_1", got, err)
		}
		list, err := tx.CustomersOf(ctx, "user_1")
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != "cus_a" || list[1].ID != "cus_b" {
			t.Errorf("CustomersOf(user_1) = %+v, want cus_a, cus_b", list)
		}
		other, err := tx.CustomersOf(ctx, "user_2")
		if err == nil && len(other) != 0 {
			t.Errorf("CustomersOf(user_2) = %+v, want none", other)
		}
		return err
	})
}

func fullSubscription() entitlement.Subscription {
	return entitlement.Subscription{
		ID: "sub_1", CustomerID: "cus_1", Status: "past_due",
		PriceIDs: []string{"price_gold", "price_addon"}, Deleted: true,
		StateAt: t0, FailedInvoice: "in_2", FailedInvoiceAt: t0.Add(time.Minute), FailedAt: t0.Add(2 * time.Minute),
		PaidInvoice: "in_1", PaidInvoiceAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(3 * time.Minute),
	}
}

func normalised(s entitlement.Subscription) entitlement.Subscription {
	for _, p := range []*time.Time{&s.StateAt, &s.FailedInvoiceAt, &s.FailedAt, &s.PaidInvoiceAt, &s.UpdatedAt} {
		if !p.IsZero() {
			*p = us(*p)
		}
	}
	if len(s.PriceIDs) == 0 {
		s.PriceIDs = nil
	}
	return s
}

func testSubscriptionRoundTrip(t *testing.T, s entitlement.Store) {
	full := fullSubscription()
	bare := entitlement.Subscription{ID: "sub_1", CustomerID: "cus_1"}
	for _, want := range []entitlement.Subscription{full, bare, full} {
		update(t, s, func(ctx context.Context, tx entitlement.Tx) error { return tx.PutSubscription(ctx, want) })
		update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
			got, err := tx.Subscription(ctx, "sub_1")
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(normalised(got), normalised(want)) {
				t.Errorf("Subscription round trip:\n got %+v\nwant %+v", got, normalised(want))
			}
			return nil
		})
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.Subscription(ctx, "sub_none"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("Subscription(unknown) error = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testSubscriptionsOf(t *testing.T, s entitlement.Store) {
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		for _, sub := range []entitlement.Subscription{
			{ID: "sub_c", CustomerID: "cus_1", Status: "active", PriceIDs: []string{"p1"}},
			{ID: "sub_a", CustomerID: "cus_1", Status: "trialing"},
			{ID: "sub_b", CustomerID: "cus_2", Status: "active"},
		} {
			if err := tx.PutSubscription(ctx, sub); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		subs, err := tx.SubscriptionsOf(ctx, "cus_1")
		if err != nil {
			return err
		}
		if len(subs) != 2 || subs[0].ID != "sub_a" || subs[1].ID != "sub_c" || subs[1].PriceIDs[0] != "p1" {
			t.Errorf("SubscriptionsOf(cus_1) = %+v, want sub_a, sub_c", subs)
		}
		none, err := tx.SubscriptionsOf(ctx, "cus_none")
		if err != nil || none == nil || len(none) != 0 {
			t.Errorf("SubscriptionsOf(unknown) = %#v, %v; want an empty slice", none, err)
		}
		return nil
	})
}

func testFeatureSet(t *testing.T, s entitlement.Store) {
	want := entitlement.FeatureSet{CustomerID: "cus_1", LookupKeys: []string{"a-b", "gold api", `quote"d`, "ünïcode"}, StateAt: t0, UpdatedAt: t0.Add(time.Minute)}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.FeatureSet(ctx, "cus_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("FeatureSet(none) error = %v, want ErrNotFound", err)
		}
		return tx.PutFeatureSet(ctx, want)
	})
	for _, next := range []entitlement.FeatureSet{want, {CustomerID: "cus_1", StateAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour)}} {
		update(t, s, func(ctx context.Context, tx entitlement.Tx) error { return tx.PutFeatureSet(ctx, next) })
		update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
			got, err := tx.FeatureSet(ctx, "cus_1")
			if err != nil {
				return err
			}
			if len(got.LookupKeys) == 0 {
				got.LookupKeys = nil
			}
			w := next
			w.StateAt, w.UpdatedAt = us(w.StateAt), us(w.UpdatedAt)
			if !reflect.DeepEqual(got, w) {
				t.Errorf("FeatureSet round trip:\n got %+v\nwant %+v", got, w)
			}
			if _, err := tx.FeatureSet(ctx, "cus_2"); !errors.Is(err, entitlement.ErrNotFound) {
				t.Errorf("FeatureSet(another customer) error = %v, want ErrNotFound", err)
			}
			return nil
		})
	}
}

func testEntitlement(t *testing.T, s entitlement.Store) {
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if _, err := tx.Entitlement(ctx, "user_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("Entitlement(none) error = %v, want ErrNotFound", err)
		}
		return tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_1", Plan: "gold", KeyID: "key_1", Source: entitlement.SourceStripe, UpdatedAt: t0})
	})
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		return tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_1", Plan: "", KeyID: "", Source: entitlement.SourceAdmin, UpdatedAt: t0.Add(time.Hour)})
	})
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		got, err := tx.Entitlement(ctx, "user_1")
		want := entitlement.Entitlement{UserID: "user_1", Source: entitlement.SourceAdmin, UpdatedAt: us(t0.Add(time.Hour))}
		if err != nil || got != want {
			t.Errorf("Entitlement = %+v, %v; want %+v", got, err, want)
		}
		return nil
	})
}

func testSealed(t *testing.T, s entitlement.Store) {
	ctx := context.Background()
	if ok, err := s.HasSealed(ctx, "user_1"); err != nil || ok {
		t.Fatalf("HasSealed(empty store) = %v, %v", ok, err)
	}
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\'', '"', 0}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if err := tx.PutSealed(ctx, entitlement.SealedKey{UserID: "user_1", KeyID: "key_old", Sealed: []byte("old"), CreatedAt: t0}); err != nil {
			return err
		}
		return tx.PutSealed(ctx, entitlement.SealedKey{UserID: "user_1", KeyID: "key_new", Sealed: binary, CreatedAt: t0})
	})
	if ok, err := s.HasSealed(ctx, "user_1"); err != nil || !ok {
		t.Fatalf("HasSealed after PutSealed = %v, %v", ok, err)
	}
	if ok, _ := s.HasSealed(ctx, "user_2"); ok {
		t.Fatal("HasSealed(user_2) = true for another user's key")
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		k, err := tx.TakeSealed(ctx, "user_1")
		if err != nil {
			return err
		}
		want := entitlement.SealedKey{UserID: "user_1", KeyID: "key_new", Sealed: binary, CreatedAt: us(t0)}
		if !reflect.DeepEqual(k, want) {
			t.Errorf("TakeSealed = %+v, want %+v (the replacement)", k, want)
		}
		if _, err := tx.TakeSealed(ctx, "user_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("second TakeSealed error = %v, want ErrNotFound", err)
		}
		return nil
	})
	if ok, _ := s.HasSealed(ctx, "user_1"); ok {
		t.Fatal("HasSealed after TakeSealed = true")
	}
}

func testConcurrentTakeSealed(t *testing.T, s entitlement.Store) {
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		return tx.PutSealed(context.Background(), entitlement.SealedKey{UserID: "u", KeyID: "k", Sealed: []byte("x"), CreatedAt: t0})
	})
	const n = 8
	var got atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Update(context.Background(), func(ctx context.Context, tx entitlement.Tx) error {
				_, err := tx.TakeSealed(context.Background(), "u")
				if err == nil {
					got.Add(1)
				}
				if errors.Is(err, entitlement.ErrNotFound) {
					return nil
				}
				return err
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Fatalf("%d concurrent TakeSealed calls got the key, want exactly 1", got.Load())
	}
}

func testRollback(t *testing.T, s entitlement.Store) {
	ctx := context.Background()
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		return tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_1", Plan: "gold", Source: entitlement.SourceStripe, UpdatedAt: t0})
	})
	// The writes are made with a context that is not fn's: a Tx writes inside its
	// transaction whatever context it is given.
	err := s.Update(ctx, func(_ context.Context, tx entitlement.Tx) error {
		if _, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_rolled_back", Type: "x", ReceivedAt: t0}); err != nil {
			return err
		}
		if _, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "user_1", BoundAt: t0}); err != nil {
			return err
		}
		if err := tx.PutSubscription(ctx, fullSubscription()); err != nil {
			return err
		}
		if err := tx.PutFeatureSet(ctx, entitlement.FeatureSet{CustomerID: "cus_1", LookupKeys: []string{"x"}, StateAt: t0}); err != nil {
			return err
		}
		if err := tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_1", Plan: "platinum", UpdatedAt: t0}); err != nil {
			return err
		}
		if err := tx.PutSealed(ctx, entitlement.SealedKey{UserID: "user_1", KeyID: "k", Sealed: []byte("x"), CreatedAt: t0}); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		if first, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_rolled_back", Type: "x", ReceivedAt: t0}); err != nil || !first {
			t.Errorf("event of a failed update stayed processed (first=%v, err=%v)", first, err)
		}
		if _, err := tx.Customer(ctx, "cus_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("binding of a failed update stayed: %v", err)
		}
		if _, err := tx.Subscription(ctx, "sub_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("subscription of a failed update stayed: %v", err)
		}
		if _, err := tx.FeatureSet(ctx, "cus_1"); !errors.Is(err, entitlement.ErrNotFound) {
			t.Errorf("feature set of a failed update stayed: %v", err)
		}
		if e, err := tx.Entitlement(ctx, "user_1"); err != nil || e.Plan != "gold" {
			t.Errorf("entitlement after a failed update = %+v, %v; want plan gold", e, err)
		}
		return nil
	})
	if ok, _ := s.HasSealed(ctx, "user_1"); ok {
		t.Error("sealed key of a failed update stayed")
	}
}

// testSerialized runs read-modify-write transactions concurrently; a store whose
// updates overlapped would lose increments.
func testSerialized(t *testing.T, s entitlement.Store) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
				e, err := tx.Entitlement(ctx, "counter")
				if err != nil && !errors.Is(err, entitlement.ErrNotFound) {
					return err
				}
				v, _ := strconv.Atoi(e.KeyID)
				time.Sleep(time.Millisecond)
				return tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "counter", KeyID: strconv.Itoa(v + 1), UpdatedAt: t0})
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		e, err := tx.Entitlement(ctx, "counter")
		if err != nil {
			return err
		}
		if e.KeyID != strconv.Itoa(n) {
			t.Errorf("after %d concurrent increments the counter is %s: updates overlapped", n, e.KeyID)
		}
		return nil
	})
}

// testContext: fn's context is derived from Update's, so its values (a request's
// trace, say) reach the stores fn calls.
func testContext(t *testing.T, s entitlement.Store) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "marker")
	err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		if got, _ := ctx.Value(key{}).(string); got != "marker" {
			t.Errorf("fn's context lacks the caller's value (got %q)", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func testPrune(t *testing.T, s entitlement.Store) {
	ctx := context.Background()
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		for i := range 5 {
			e := entitlement.Event{ID: fmt.Sprintf("evt_%d", i), Type: "x", ReceivedAt: t0.Add(time.Duration(i) * time.Hour)}
			if _, err := tx.MarkProcessed(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	n, err := s.PruneEvents(ctx, t0.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneEvents = %d, %v; want 2 (the events received before the cutoff)", n, err)
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		for i, want := range []bool{true, true, false, false, false} {
			first, err := tx.MarkProcessed(ctx, entitlement.Event{ID: fmt.Sprintf("evt_%d", i), Type: "x", ReceivedAt: t0})
			if err != nil {
				return err
			}
			if first != want {
				t.Errorf("after pruning, evt_%d first=%v, want %v", i, first, want)
			}
		}
		return nil
	})
}

func testCanceled(t *testing.T, s entitlement.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		ran = true
		_, err := tx.MarkProcessed(ctx, entitlement.Event{ID: "evt_c", Type: "x", ReceivedAt: t0})
		return err
	})
	if err == nil {
		t.Fatalf("Update on a canceled context succeeded (fn ran: %v)", ran)
	}
	update(t, s, func(ctx context.Context, tx entitlement.Tx) error {
		first, err := tx.MarkProcessed(context.Background(), entitlement.Event{ID: "evt_c", Type: "x", ReceivedAt: t0})
		if err == nil && !first {
			t.Error("the canceled update recorded its event")
		}
		return err
	})
}
