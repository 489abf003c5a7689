// Package sqlstore is an entitlement.Store in a PostgreSQL (lib/pq) or SQLite
// (modernc.org/sqlite) database, through sqlx.
//
// Store.Update runs in a transaction that travels in the context it hands its
// function: the application's key and quota stores on the same *sqlx.DB
// (apikey/sqlstore, quota/sqlstore) join it when called with that context, so an
// event, the state it changes and the keys it issues or revokes commit or roll
// back together. The store's tables are its own (entitlement_*); Bootstrap creates
// only those, and each store prepares its own schema.
//
// The Store is also an entitlement.MeterLedger: the usage ledger (entitlement_usage,
// one row per key and minute, primary key (key_id, bucket)) and the meter reports
// made from it (entitlement_usage_reports). The ledger's writes are transactions of
// their own that do not take the lock billing updates take, so recording usage
// never waits for a webhook.
//
// The package imports no driver: open the database with the driver of your choice
// and pass the handle to New, which bounds an unbounded pool (16 connections on
// PostgreSQL, 4 on SQLite: one writer at a time, readers beside it) unless the
// application set its own. For SQLite (modernc.org/sqlite, driver "sqlite") open
// the DSN that tollgate.SQLiteDSN returns: WAL, a busy timeout, synchronous=NORMAL
// and immediate write transactions.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

var (
	_ entitlement.Store       = (*Store)(nil)
	_ entitlement.MeterLedger = (*Store)(nil)
)

// tables are the tables the store keeps. entitlement_lock holds one row that every
// Update locks first: it orders updates on PostgreSQL (a row lock) and takes
// SQLite's write lock before the transaction reads anything.
var tables = []sqldb.Table{
	{
		Name:   "entitlement_lock",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_lock (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0)`,
	},
	{
		Name: "entitlement_events",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_events (
	event_id TEXT PRIMARY KEY,
	event_type TEXT NOT NULL DEFAULT '',
	created_at TIMESTAMP NULL,
	received_at TIMESTAMP NOT NULL
)`,
		Indexes: []string{`CREATE INDEX IF NOT EXISTS entitlement_events_received ON entitlement_events (received_at)`},
	},
	{
		Name: "entitlement_customers",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_customers (
	customer_id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	bound_at TIMESTAMP NOT NULL
)`,
		Indexes: []string{`CREATE INDEX IF NOT EXISTS entitlement_customers_user ON entitlement_customers (user_id)`},
	},
	{
		Name: "entitlement_subscriptions",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_subscriptions (
	subscription_id TEXT PRIMARY KEY,
	customer_id TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL DEFAULT '',
	price_ids TEXT NOT NULL DEFAULT '',
	deleted INTEGER NOT NULL DEFAULT 0,
	state_at TIMESTAMP NULL,
	failed_invoice TEXT NOT NULL DEFAULT '',
	failed_invoice_at TIMESTAMP NULL,
	failed_at TIMESTAMP NULL,
	paid_invoice TEXT NOT NULL DEFAULT '',
	paid_invoice_at TIMESTAMP NULL,
	updated_at TIMESTAMP NULL
)`,
		Indexes: []string{`CREATE INDEX IF NOT EXISTS entitlement_subscriptions_customer ON entitlement_subscriptions (customer_id)`},
	},
	{
		Name: "entitlement_features",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_features (
	customer_id TEXT PRIMARY KEY,
	lookup_keys TEXT NOT NULL DEFAULT '[]',
	state_at TIMESTAMP NULL,
	updated_at TIMESTAMP NULL
)`,
	},
	{
		Name: "entitlement_grants",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_grants (
	user_id TEXT PRIMARY KEY,
	plan TEXT NOT NULL DEFAULT '',
	key_id TEXT NOT NULL DEFAULT '',
	source TEXT NOT NULL DEFAULT '',
	updated_at TIMESTAMP NULL
)`,
	},
	{
		Name: "entitlement_sealed_keys",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_sealed_keys (
	user_id TEXT PRIMARY KEY,
	key_id TEXT NOT NULL,
	sealed TEXT NOT NULL,
	created_at TIMESTAMP NULL
)`,
	},
}

// Store keeps entitlement state in SQL tables. It is safe for concurrent use, also
// from several processes on one database. Make it with New.
type Store struct {
	db *sqlx.DB
	q  queries
}

type queries struct {
	lock, markEvent, prune                         string
	bind, customer, customersOf                    string
	subscription, subscriptionsOf, putSubscription string
	features, putFeatures                          string
	entitlement, putEntitlement                    string
	ledger                                         ledgerQueries
	putSealed, takeSealed, hasSealed               string
}

// New returns a store on db and bounds db's pool if the application left it
// unbounded. Call Bootstrap once at start-up.
func New(db *sqlx.DB) *Store {
	sqldb.Tune(db)
	r := db.Rebind
	return &Store{db: db, q: queries{
		lock:            `UPDATE entitlement_lock SET n = n + 1 WHERE id = 1`,
		markEvent:       r(`INSERT INTO entitlement_events (event_id, event_type, created_at, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`),
		prune:           r(`DELETE FROM entitlement_events WHERE received_at < ?`),
		bind:            r(`INSERT INTO entitlement_customers (customer_id, user_id, bound_at) VALUES (?, ?, ?) ON CONFLICT (customer_id) DO NOTHING`),
		customer:        r(`SELECT customer_id, user_id, bound_at FROM entitlement_customers WHERE customer_id = ?`),
		customersOf:     r(`SELECT customer_id, user_id, bound_at FROM entitlement_customers WHERE user_id = ? ORDER BY customer_id`),
		subscription:    r(`SELECT ` + subColumns + ` FROM entitlement_subscriptions WHERE subscription_id = ?`),
		subscriptionsOf: r(`SELECT ` + subColumns + ` FROM entitlement_subscriptions WHERE customer_id = ? ORDER BY subscription_id`),
		putSubscription: r(`INSERT INTO entitlement_subscriptions (` + subColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (subscription_id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
	price_ids = excluded.price_ids, deleted = excluded.deleted, state_at = excluded.state_at,
	failed_invoice = excluded.failed_invoice, failed_invoice_at = excluded.failed_invoice_at, failed_at = excluded.failed_at,
	paid_invoice = excluded.paid_invoice, paid_invoice_at = excluded.paid_invoice_at, updated_at = excluded.updated_at`),
		features: r(`SELECT customer_id, lookup_keys, state_at, updated_at FROM entitlement_features WHERE customer_id = ?`),
		putFeatures: r(`INSERT INTO entitlement_features (customer_id, lookup_keys, state_at, updated_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (customer_id) DO UPDATE SET lookup_keys = excluded.lookup_keys, state_at = excluded.state_at, updated_at = excluded.updated_at`),
		ledger:      newLedgerQueries(r, sqldb.IsPostgres(db)),
		entitlement: r(`SELECT user_id, plan, key_id, source, updated_at FROM entitlement_grants WHERE user_id = ?`),
		putEntitlement: r(`INSERT INTO entitlement_grants (user_id, plan, key_id, source, updated_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (user_id) DO UPDATE SET plan = excluded.plan, key_id = excluded.key_id, source = excluded.source, updated_at = excluded.updated_at`),
		putSealed: r(`INSERT INTO entitlement_sealed_keys (user_id, key_id, sealed, created_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (user_id) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, created_at = excluded.created_at`),
		takeSealed: r(`DELETE FROM entitlement_sealed_keys WHERE user_id = ? RETURNING user_id, key_id, sealed, created_at`),
		hasSealed:  r(`SELECT COUNT(*) FROM entitlement_sealed_keys WHERE user_id = ?`),
	}}
}

// Bootstrap creates the store's tables (entitlement_lock, entitlement_events,
// entitlement_customers, entitlement_subscriptions, entitlement_features,
// entitlement_grants, entitlement_sealed_keys, and the ledger's entitlement_usage
// and entitlement_usage_reports) if they are missing, and nothing else. It is idempotent
// and safe to run from several processes at once.
func (s *Store) Bootstrap(ctx context.Context) error {
	if err := sqldb.Bootstrap(ctx, s.db, slices.Concat(tables, ledgerTables)...); err != nil {
		return fmt.Errorf("entitlement/sqlstore: %w", err)
	}
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		_, err := q.ExecContext(ctx, `INSERT INTO entitlement_lock (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`)
		return err
	})
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: bootstrap: %w", err)
	}
	return nil
}

// Update implements entitlement.Store with sqldb's context-borne transactions: it
// begins a transaction on the store's database (or joins the one ctx already
// carries on it), and fn's ctx carries it, so stores on the same *sqlx.DB that
// join through the context write inside it. The transaction first locks the single
// row of entitlement_lock, so updates run one after another across processes;
// billing events are rare enough for that.
func (s *Store) Update(ctx context.Context, fn func(ctx context.Context, tx entitlement.Tx) error) error {
	return sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		res, err := q.ExecContext(ctx, s.q.lock)
		if err != nil {
			return fmt.Errorf("entitlement/sqlstore: lock: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("entitlement/sqlstore: lock: %w", err)
		}
		if n != 1 {
			return errors.New("entitlement/sqlstore: the lock row is missing (run Bootstrap)")
		}
		return fn(ctx, &tx{s: s, q: q})
	})
}

// HasSealed implements entitlement.Store.
func (s *Store) HasSealed(ctx context.Context, userID string) (bool, error) {
	var n int
	if err := sqldb.Q(ctx, s.db).GetContext(ctx, &n, s.q.hasSealed, userID); err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: has sealed: %w", err)
	}
	return n > 0, nil
}

// PruneEvents implements entitlement.Store.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		res, err := q.ExecContext(ctx, s.q.prune, sqldb.T(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("entitlement/sqlstore: prune: %w", err)
	}
	return n, nil
}

// tx runs its statements on the transaction of its Update (q), whatever context
// its methods are given: the context only cancels them.
type tx struct {
	s *Store
	q sqldb.Querier
}

func (t *tx) MarkProcessed(ctx context.Context, e entitlement.Event) (bool, error) {
	res, err := t.q.ExecContext(ctx, t.s.q.markEvent, e.ID, e.Type, sqldb.T(e.Created), sqldb.T(e.ReceivedAt))
	if err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: mark event: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: mark event: %w", err)
	}
	return n == 1, nil
}

type customerRow struct {
	ID      string     `db:"customer_id"`
	UserID  string     `db:"user_id"`
	BoundAt sqldb.Time `db:"bound_at"`
}

func (r customerRow) customer() entitlement.Customer {
	return entitlement.Customer{ID: r.ID, UserID: r.UserID, BoundAt: r.BoundAt.Time}
}

func (t *tx) BindCustomer(ctx context.Context, c entitlement.Customer) (entitlement.Customer, error) {
	if _, err := t.q.ExecContext(ctx, t.s.q.bind, c.ID, c.UserID, sqldb.T(c.BoundAt)); err != nil {
		return entitlement.Customer{}, fmt.Errorf("entitlement/sqlstore: bind customer: %w", err)
	}
	return t.Customer(ctx, c.ID)
}

func (t *tx) Customer(ctx context.Context, customerID string) (entitlement.Customer, error) {
	var r customerRow
	err := t.q.GetContext(ctx, &r, t.s.q.customer, customerID)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.Customer{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.Customer{}, fmt.Errorf("entitlement/sqlstore: customer: %w", err)
	}
	return r.customer(), nil
}

func (t *tx) CustomersOf(ctx context.Context, userID string) ([]entitlement.Customer, error) {
	var rows []customerRow
	if err := t.q.SelectContext(ctx, &rows, t.s.q.customersOf, userID); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: customers of user: %w", err)
	}
	out := make([]entitlement.Customer, len(rows))
	for i, r := range rows {
		out[i] = r.customer()
	}
	return out, nil
}

const subColumns = `subscription_id, customer_id, status, price_ids, deleted, state_at,
	failed_invoice, failed_invoice_at, failed_at, paid_invoice, paid_invoice_at, updated_at`

type subscriptionRow struct {
	ID              string     `db:"subscription_id"`
	CustomerID      string     `db:"customer_id"`
	Status          string     `db:"status"`
	PriceIDs        string     `db:"price_ids"`
	Deleted         int        `db:"deleted"`
	StateAt         sqldb.Time `db:"state_at"`
	FailedInvoice   string     `db:"failed_invoice"`
	FailedInvoiceAt sqldb.Time `db:"failed_invoice_at"`
	FailedAt        sqldb.Time `db:"failed_at"`
	PaidInvoice     string     `db:"paid_invoice"`
	PaidInvoiceAt   sqldb.Time `db:"paid_invoice_at"`
	UpdatedAt       sqldb.Time `db:"updated_at"`
}

func (r subscriptionRow) subscription() entitlement.Subscription {
	var prices []string
	if r.PriceIDs != "" {
		prices = strings.Split(r.PriceIDs, ",")
	}
	return entitlement.Subscription{
		ID: r.ID, CustomerID: r.CustomerID, Status: r.Status, PriceIDs: prices, Deleted: r.Deleted != 0,
		StateAt: r.StateAt.Time, FailedInvoice: r.FailedInvoice, FailedInvoiceAt: r.FailedInvoiceAt.Time,
		FailedAt: r.FailedAt.Time, PaidInvoice: r.PaidInvoice, PaidInvoiceAt: r.PaidInvoiceAt.Time,
		UpdatedAt: r.UpdatedAt.Time,
	}
}

func (t *tx) Subscription(ctx context.Context, id string) (entitlement.Subscription, error) {
	var r subscriptionRow
	err := t.q.GetContext(ctx, &r, t.s.q.subscription, id)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.Subscription{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.Subscription{}, fmt.Errorf("entitlement/sqlstore: subscription: %w", err)
	}
	return r.subscription(), nil
}

func (t *tx) SubscriptionsOf(ctx context.Context, customerID string) ([]entitlement.Subscription, error) {
	var rows []subscriptionRow
	if err := t.q.SelectContext(ctx, &rows, t.s.q.subscriptionsOf, customerID); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: subscriptions of customer: %w", err)
	}
	out := make([]entitlement.Subscription, len(rows))
	for i, r := range rows {
		out[i] = r.subscription()
	}
	return out, nil
}

func (t *tx) PutSubscription(ctx context.Context, s entitlement.Subscription) error {
	for _, p := range s.PriceIDs {
		if p == "" || strings.Contains(p, ",") {
			return fmt.Errorf("entitlement/sqlstore: put subscription: bad price ID %q", p)
		}
	}
	deleted := 0
	if s.Deleted {
		deleted = 1
	}
	_, err := t.q.ExecContext(ctx, t.s.q.putSubscription,
		s.ID, s.CustomerID, s.Status, strings.Join(s.PriceIDs, ","), deleted, sqldb.T(s.StateAt),
		s.FailedInvoice, sqldb.T(s.FailedInvoiceAt), sqldb.T(s.FailedAt),
		s.PaidInvoice, sqldb.T(s.PaidInvoiceAt), sqldb.T(s.UpdatedAt))
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: put subscription: %w", err)
	}
	return nil
}

func (t *tx) FeatureSet(ctx context.Context, customerID string) (entitlement.FeatureSet, error) {
	var r struct {
		CustomerID string     `db:"customer_id"`
		LookupKeys string     `db:"lookup_keys"`
		StateAt    sqldb.Time `db:"state_at"`
		UpdatedAt  sqldb.Time `db:"updated_at"`
	}
	err := t.q.GetContext(ctx, &r, t.s.q.features, customerID)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.FeatureSet{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.FeatureSet{}, fmt.Errorf("entitlement/sqlstore: feature set: %w", err)
	}
	f := entitlement.FeatureSet{CustomerID: r.CustomerID, StateAt: r.StateAt.Time, UpdatedAt: r.UpdatedAt.Time}
	if err := json.Unmarshal([]byte(r.LookupKeys), &f.LookupKeys); err != nil {
		return entitlement.FeatureSet{}, fmt.Errorf("entitlement/sqlstore: feature set: %w", err)
	}
	return f, nil
}

// Lookup keys are stored as a JSON array: they are the operator's strings, and
// JSON escapes whatever they hold (even a NUL, which PostgreSQL's text refuses).
func (t *tx) PutFeatureSet(ctx context.Context, f entitlement.FeatureSet) error {
	keys := f.LookupKeys
	if keys == nil {
		keys = []string{}
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: put feature set: %w", err)
	}
	if _, err := t.q.ExecContext(ctx, t.s.q.putFeatures, f.CustomerID, string(b), sqldb.T(f.StateAt), sqldb.T(f.UpdatedAt)); err != nil {
		return fmt.Errorf("entitlement/sqlstore: put feature set: %w", err)
	}
	return nil
}

type entitlementRow struct {
	UserID    string     `db:"user_id"`
	Plan      string     `db:"plan"`
	KeyID     string     `db:"key_id"`
	Source    string     `db:"source"`
	UpdatedAt sqldb.Time `db:"updated_at"`
}

func (t *tx) Entitlement(ctx context.Context, userID string) (entitlement.Entitlement, error) {
	var r entitlementRow
	err := t.q.GetContext(ctx, &r, t.s.q.entitlement, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.Entitlement{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.Entitlement{}, fmt.Errorf("entitlement/sqlstore: entitlement: %w", err)
	}
	return entitlement.Entitlement{UserID: r.UserID, Plan: r.Plan, KeyID: r.KeyID, Source: r.Source, UpdatedAt: r.UpdatedAt.Time}, nil
}

func (t *tx) PutEntitlement(ctx context.Context, e entitlement.Entitlement) error {
	if _, err := t.q.ExecContext(ctx, t.s.q.putEntitlement, e.UserID, e.Plan, e.KeyID, e.Source, sqldb.T(e.UpdatedAt)); err != nil {
		return fmt.Errorf("entitlement/sqlstore: put entitlement: %w", err)
	}
	return nil
}

// Sealed keys are stored as standard base64 text, which both databases keep alike.

func (t *tx) PutSealed(ctx context.Context, k entitlement.SealedKey) error {
	_, err := t.q.ExecContext(ctx, t.s.q.putSealed, k.UserID, k.KeyID, base64.StdEncoding.EncodeToString(k.Sealed), sqldb.T(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: put sealed key: %w", err)
	}
	return nil
}

func (t *tx) TakeSealed(ctx context.Context, userID string) (entitlement.SealedKey, error) {
	var r struct {
		UserID    string     `db:"user_id"`
		KeyID     string     `db:"key_id"`
		Sealed    string     `db:"sealed"`
		CreatedAt sqldb.Time `db:"created_at"`
	}
	err := t.q.GetContext(ctx, &r, t.s.q.takeSealed, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.SealedKey{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.SealedKey{}, fmt.Errorf("entitlement/sqlstore: take sealed key: %w", err)
	}
	sealed, err := base64.StdEncoding.DecodeString(r.Sealed)
	if err != nil {
		return entitlement.SealedKey{}, fmt.Errorf("entitlement/sqlstore: take sealed key: %w", err)
	}
	return entitlement.SealedKey{UserID: r.UserID, KeyID: r.KeyID, Sealed: sealed, CreatedAt: r.CreatedAt.Time}, nil
}
