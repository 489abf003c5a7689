package entitlement

import (
	"context"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// Customer binds a Stripe customer to a user of ours.
type Customer struct {
	ID      string // Stripe customer ID, cus_…
	UserID  string
	BoundAt time.Time
}

// Subscription is what the store knows of a Stripe subscription: enough to work out
// the plan it grants. A subscription known only from invoices has an empty Status.
type Subscription struct {
	ID         string // Stripe subscription ID, sub_…
	CustomerID string
	// Status is Stripe's status (active, trialing, past_due, …) as last seen.
	Status string
	// PriceIDs are the prices of the subscription's items.
	PriceIDs []string
	// Deleted is set by customer.subscription.deleted; later events are ignored.
	Deleted bool
	// StateAt is when Stripe created the event (or when we read the subscription)
	// that set Status and PriceIDs; older snapshots are ignored.
	StateAt time.Time
	// FailedInvoice is an invoice whose payment failed and that has not been paid
	// since; while set the subscription grants nothing. FailedInvoiceAt is the
	// invoice's creation time and FailedAt the failure event's time.
	FailedInvoice   string
	FailedInvoiceAt time.Time
	FailedAt        time.Time
	// PaidInvoice is the newest paid invoice and PaidInvoiceAt its creation time: a
	// late failure of it, or of an older invoice, changes nothing.
	PaidInvoice   string
	PaidInvoiceAt time.Time
	UpdatedAt     time.Time
}

// FeatureSet is what the store knows of a Stripe customer's active entitlements:
// the feature lookup keys of its newest active entitlement summary. Plans whose
// Features hold one of them are granted as a subscription's prices grant theirs.
type FeatureSet struct {
	CustomerID string
	// LookupKeys are the summary's feature lookup keys, sorted, without
	// duplicates; none means the customer has no active entitlement.
	LookupKeys []string
	// StateAt is when Stripe created the summary's event; older summaries are
	// ignored.
	StateAt   time.Time
	UpdatedAt time.Time
}

// Grant sources: who applied an Entitlement.
const (
	SourceStripe = "stripe"
	SourceAdmin  = "admin"
)

// Entitlement is the plan last applied to a user, and the key issued for it.
type Entitlement struct {
	UserID string
	// Plan is empty when the user's keys were revoked and none replaced them.
	Plan      string
	KeyID     string
	Source    string // SourceStripe or SourceAdmin
	UpdatedAt time.Time
}

// Event is a processed Stripe event.
type Event struct {
	ID         string // evt_…
	Type       string
	Created    time.Time // Stripe's creation time
	ReceivedAt time.Time
}

// SealedKey is a raw key issued by the webhook, encrypted (AES-256-GCM) until its
// owner reveals it. Sealed is the nonce followed by the ciphertext.
type SealedKey struct {
	UserID    string
	KeyID     string
	Sealed    []byte
	CreatedAt time.Time
}

// Store keeps the entitlement state: customer bindings, subscriptions, feature
// sets, applied entitlements, processed event IDs and sealed keys. Implementations are safe for
// concurrent use. Every method takes the context first. Times come back in UTC at
// microsecond precision.
type Store interface {
	// Update runs fn in one transaction, serialized against every other Update on
	// the same data (also from other processes, for SQL stores), and commits it when
	// fn returns nil. When fn returns an error the transaction's writes are
	// discarded and Update returns that error. A canceled ctx fails Update without
	// committing anything.
	//
	// fn's ctx is derived from ctx and carries the transaction: other stores on the
	// same database that join transactions through the context (apikey/sqlstore,
	// quota/sqlstore, a KeyIssuer built on them) commit and roll back with it when
	// called with that ctx. The Tx is valid only inside fn; its methods run in the
	// transaction whatever context they are given.
	Update(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error

	// HasSealed reports whether a sealed key waits for the user.
	HasSealed(ctx context.Context, userID string) (bool, error)

	// PruneEvents forgets processed events received before before and returns how
	// many it forgot.
	PruneEvents(ctx context.Context, before time.Time) (int64, error)
}

// Tx is a store transaction; see Store.Update.
type Tx interface {
	// MarkProcessed records e.ID and reports whether this is its first record.
	// false means the event was processed before (or concurrently, by a
	// transaction that committed first).
	MarkProcessed(ctx context.Context, e Event) (first bool, err error)

	// BindCustomer binds c.ID to c.UserID unless the customer is bound already, and
	// returns the binding in effect: c, or the existing one.
	BindCustomer(ctx context.Context, c Customer) (Customer, error)

	// Customer returns the customer's binding, or ErrNotFound.
	Customer(ctx context.Context, customerID string) (Customer, error)

	// CustomersOf returns the customers bound to the user, by ID; none is an empty
	// slice and no error.
	CustomersOf(ctx context.Context, userID string) ([]Customer, error)

	// Subscription returns the subscription, or ErrNotFound.
	Subscription(ctx context.Context, id string) (Subscription, error)

	// SubscriptionsOf returns the customer's subscriptions, by ID; none is an empty
	// slice and no error.
	SubscriptionsOf(ctx context.Context, customerID string) ([]Subscription, error)

	// PutSubscription stores s, replacing the subscription with its ID.
	PutSubscription(ctx context.Context, s Subscription) error

	// FeatureSet returns the customer's feature set, or ErrNotFound.
	FeatureSet(ctx context.Context, customerID string) (FeatureSet, error)

	// PutFeatureSet stores f, replacing the customer's previous one.
	PutFeatureSet(ctx context.Context, f FeatureSet) error

	// Entitlement returns the user's applied entitlement, or ErrNotFound.
	Entitlement(ctx context.Context, userID string) (Entitlement, error)

	// PutEntitlement stores e, replacing the user's previous one.
	PutEntitlement(ctx context.Context, e Entitlement) error

	// PutSealed stores k, replacing any sealed key of the same user.
	PutSealed(ctx context.Context, k SealedKey) error

	// TakeSealed deletes the user's sealed key and returns it, or ErrNotFound.
	TakeSealed(ctx context.Context, userID string) (SealedKey, error)
}

// KeyIssuer issues and revokes API keys with their quotas. Its methods run in the
// transaction ctx carries (Store.Update hands fn such a ctx), so that on a SQL
// database the keys and quotas commit or roll back with the event that changed
// them; a KeyIssuer on memory stores cannot roll back, and the Service converges
// anyway (a retried event finds its plan not yet applied and issues again).
// Implementations are safe for concurrent use. A server implements it over its
// key and quota stores, issuing each key with its quota in one step.
type KeyIssuer interface {
	// Issue issues one active key on plan with a quota of limit monthly calls in
	// place of the user's active keys, and returns the raw key, shown once. With
	// grace 0 it revokes those keys (reason); with grace > 0 it lets them work
	// until grace from now (apikey.Store.Retire), on plan and the new key's quota,
	// so that both keys spend one allowance. The Service passes
	// Config.RotateGrace for a change from one paid plan to another, and 0
	// otherwise.
	Issue(ctx context.Context, userID, plan string, limit int64, reason string, grace time.Duration) (raw string, k apikey.Key, err error)
	// RevokeUser revokes every active key of the user, expiring ones included,
	// and returns how many.
	RevokeUser(ctx context.Context, userID, reason string) (int, error)
	// Key returns the key with that ID (apikey.ErrNotFound).
	Key(ctx context.Context, id string) (apikey.Key, error)
}
