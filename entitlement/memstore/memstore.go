// Package memstore is an in-memory entitlement.Store and entitlement.MeterLedger
// for tests, examples and single-process servers that can lose their state on
// restart.
//
// Its transactions undo their own writes when they fail, but not the writes of
// other stores made with the context Update hands over (memory key and quota
// stores cannot roll back). The Service converges anyway: a retried event finds
// its plan not yet applied and issues the key again, replacing the one a failed
// attempt left.
package memstore

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
)

var (
	_ entitlement.Store       = (*Store)(nil)
	_ entitlement.MeterLedger = (*Store)(nil)
)

// Store keeps the entitlement state in maps behind one mutex, which every Update
// holds from start to end, so updates run one at a time (an Update must not call
// Update on the same store). A failed Update undoes its own writes. It is safe for
// concurrent use; the zero Store is not usable, call New.
//
// It is also an entitlement.MeterLedger: the usage ledger and its meter reports
// live beside the state, behind a mutex of their own, so recording usage never
// waits for a billing event.
type Store struct {
	mu            sync.Mutex
	events        map[string]entitlement.Event
	customers     map[string]entitlement.Customer
	subscriptions map[string]entitlement.Subscription
	features      map[string]entitlement.FeatureSet
	entitlements  map[string]entitlement.Entitlement
	sealed        map[string]entitlement.SealedKey

	ledger ledger
}

// New returns an empty store.
func New() *Store {
	return &Store{
		events:        make(map[string]entitlement.Event),
		customers:     make(map[string]entitlement.Customer),
		subscriptions: make(map[string]entitlement.Subscription),
		features:      make(map[string]entitlement.FeatureSet),
		entitlements:  make(map[string]entitlement.Entitlement),
		sealed:        make(map[string]entitlement.SealedKey),
		ledger:        newLedger(),
	}
}

// Update implements entitlement.Store. fn's context is ctx itself: there is no
// transaction for other stores to join. A ctx canceled before fn returns fails the
// Update, which then undoes fn's writes, as a SQL store's would be.
func (s *Store) Update(ctx context.Context, fn func(ctx context.Context, tx entitlement.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &tx{s: s}
	committed := false
	defer func() {
		tx.done = true
		if !committed {
			for i := len(tx.undo) - 1; i >= 0; i-- {
				tx.undo[i]()
			}
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	committed = true
	return nil
}

// HasSealed implements entitlement.Store.
func (s *Store) HasSealed(ctx context.Context, userID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sealed[userID]
	return ok, nil
}

// PruneEvents implements entitlement.Store.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	before = us(before)
	for id, e := range s.events {
		if e.ReceivedAt.Before(before) {
			delete(s.events, id)
			n++
		}
	}
	return n, nil
}

// us returns t as the SQL stores keep it: UTC, microsecond precision; zero stays
// zero.
func us(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// tx is a transaction: s.mu is held, and every write records how to undo it.
type tx struct {
	s    *Store
	undo []func()
	done bool
}

// restore records how to put m[k] back as it is now.
func restore[V any](t *tx, m map[string]V, k string) {
	old, had := m[k]
	t.undo = append(t.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

func (t *tx) check() {
	if t.done {
		panic("entitlement/memstore: Tx used after its Update returned")
	}
}

func (t *tx) MarkProcessed(ctx context.Context, e entitlement.Event) (bool, error) {
	t.check()
	if _, ok := t.s.events[e.ID]; ok {
		return false, nil
	}
	restore(t, t.s.events, e.ID)
	e.Created, e.ReceivedAt = us(e.Created), us(e.ReceivedAt)
	t.s.events[e.ID] = e
	return true, nil
}

func (t *tx) BindCustomer(ctx context.Context, c entitlement.Customer) (entitlement.Customer, error) {
	t.check()
	if cur, ok := t.s.customers[c.ID]; ok {
		return cur, nil
	}
	restore(t, t.s.customers, c.ID)
	c.BoundAt = us(c.BoundAt)
	t.s.customers[c.ID] = c
	return c, nil
}

func (t *tx) Customer(ctx context.Context, customerID string) (entitlement.Customer, error) {
	t.check()
	c, ok := t.s.customers[customerID]
	if !ok {
		return entitlement.Customer{}, entitlement.ErrNotFound
	}
	return c, nil
}

func (t *tx) CustomersOf(ctx context.Context, userID string) ([]entitlement.Customer, error) {
	t.check()
	out := []entitlement.Customer{}
	for _, c := range t.s.customers {
		if c.UserID == userID {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (t *tx) Subscription(ctx context.Context, id string) (entitlement.Subscription, error) {
	t.check()
	sub, ok := t.s.subscriptions[id]
	if !ok {
		return entitlement.Subscription{}, entitlement.ErrNotFound
	}
	sub.PriceIDs = slices.Clone(sub.PriceIDs)
	return sub, nil
}

func (t *tx) SubscriptionsOf(ctx context.Context, customerID string) ([]entitlement.Subscription, error) {
	t.check()
	out := []entitlement.Subscription{}
	for _, sub := range t.s.subscriptions {
		if sub.CustomerID == customerID {
			sub.PriceIDs = slices.Clone(sub.PriceIDs)
			out = append(out, sub)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (t *tx) PutSubscription(ctx context.Context, sub entitlement.Subscription) error {
	t.check()
	restore(t, t.s.subscriptions, sub.ID)
	sub.PriceIDs = slices.Clone(sub.PriceIDs)
	for _, p := range []*time.Time{&sub.StateAt, &sub.FailedInvoiceAt, &sub.FailedAt, &sub.PaidInvoiceAt, &sub.UpdatedAt} {
		*p = us(*p)
	}
	t.s.subscriptions[sub.ID] = sub
	return nil
}

func (t *tx) FeatureSet(ctx context.Context, customerID string) (entitlement.FeatureSet, error) {
	t.check()
	f, ok := t.s.features[customerID]
	if !ok {
		return entitlement.FeatureSet{}, entitlement.ErrNotFound
	}
	f.LookupKeys = slices.Clone(f.LookupKeys)
	return f, nil
}

func (t *tx) PutFeatureSet(ctx context.Context, f entitlement.FeatureSet) error {
	t.check()
	restore(t, t.s.features, f.CustomerID)
	f.LookupKeys = slices.Clone(f.LookupKeys)
	f.StateAt, f.UpdatedAt = us(f.StateAt), us(f.UpdatedAt)
	t.s.features[f.CustomerID] = f
	return nil
}

func (t *tx) Entitlement(ctx context.Context, userID string) (entitlement.Entitlement, error) {
	t.check()
	e, ok := t.s.entitlements[userID]
	if !ok {
		return entitlement.Entitlement{}, entitlement.ErrNotFound
	}
	return e, nil
}

func (t *tx) PutEntitlement(ctx context.Context, e entitlement.Entitlement) error {
	t.check()
	restore(t, t.s.entitlements, e.UserID)
	e.UpdatedAt = us(e.UpdatedAt)
	t.s.entitlements[e.UserID] = e
	return nil
}

func (t *tx) PutSealed(ctx context.Context, k entitlement.SealedKey) error {
	t.check()
	restore(t, t.s.sealed, k.UserID)
	k.Sealed = slices.Clone(k.Sealed)
	k.CreatedAt = us(k.CreatedAt)
	t.s.sealed[k.UserID] = k
	return nil
}

func (t *tx) TakeSealed(ctx context.Context, userID string) (entitlement.SealedKey, error) {
	t.check()
	k, ok := t.s.sealed[userID]
	if !ok {
		return entitlement.SealedKey{}, entitlement.ErrNotFound
	}
	restore(t, t.s.sealed, userID)
	delete(t.s.sealed, userID)
	return k, nil
}
