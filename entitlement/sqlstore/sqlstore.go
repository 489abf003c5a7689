// Package sqlstore is an entitlement.Store in a PostgreSQL (lib/pq) or SQLite
// (modernc.org/sqlite) database, through sqlx, next to apikey/sqlstore's api_keys
// table so that one transaction covers an event, the state it changes and the keys
// it issues or revokes.
//
// The package imports no driver: open the database with the driver of your choice
// and pass the handle to New. For SQLite (modernc.org/sqlite) use WAL, a busy timeout
// and immediate write transactions, as in
//
//	file:app.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	apikeysql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

var _ entitlement.Store = (*Store)(nil)

// Tables are the tables the store keeps, for sqldb.Bootstrap. entitlement_lock holds
// one row that every Update locks first: it orders updates on PostgreSQL (a row
// lock) and takes SQLite's write lock before the transaction reads anything.
var Tables = []sqldb.Table{
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
// from several processes on one database.
type Store struct {
	db   *sqlx.DB
	keys *apikeysql.Store
	q    queries
}

type queries struct {
	lock, markEvent, prune                         string
	bind, customer, customersOf                    string
	subscription, subscriptionsOf, putSubscription string
	entitlement, putEntitlement                    string
	putSealed, takeSealed, hasSealed               string
}

// New returns a store on db. Call Bootstrap once at start-up.
func New(db *sqlx.DB) *Store {
	r := db.Rebind
	return &Store{db: db, keys: apikeysql.New(db), q: queries{
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
		entitlement: r(`SELECT user_id, plan, key_id, source, updated_at FROM entitlement_grants WHERE user_id = ?`),
		putEntitlement: r(`INSERT INTO entitlement_grants (user_id, plan, key_id, source, updated_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (user_id) DO UPDATE SET plan = excluded.plan, key_id = excluded.key_id, source = excluded.source, updated_at = excluded.updated_at`),
		putSealed: r(`INSERT INTO entitlement_sealed_keys (user_id, key_id, sealed, created_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (user_id) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, created_at = excluded.created_at`),
		takeSealed: r(`DELETE FROM entitlement_sealed_keys WHERE user_id = ? RETURNING user_id, key_id, sealed, created_at`),
		hasSealed:  r(`SELECT COUNT(*) FROM entitlement_sealed_keys WHERE user_id = ?`),
	}}
}

// Bootstrap creates the store's tables, and the api_keys table its transactions
// write keys to, if they are missing. It is idempotent.
func (s *Store) Bootstrap(ctx context.Context) error {
	tables := append([]sqldb.Table{sqldb.KeysTable}, Tables...)
	if err := sqldb.Bootstrap(ctx, s.db, tables...); err != nil {
		return fmt.Errorf("entitlement/sqlstore: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO entitlement_lock (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`); err != nil {
		return fmt.Errorf("entitlement/sqlstore: bootstrap: %w", err)
	}
	return nil
}

// Keys implements entitlement.Store: an apikey/sqlstore on the same database.
func (s *Store) Keys() apikey.Store { return s.keys }

// Update implements entitlement.Store. The transaction first locks the single row
// of entitlement_lock, so updates run one after another across processes; billing
// events are rare enough for that. The keys of Tx.Keys are apikey/sqlstore's,
// bound to the same transaction.
func (s *Store) Update(ctx context.Context, fn func(tx entitlement.Tx) error) error {
	sqlTx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: begin: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := sqlTx.ExecContext(ctx, s.q.lock)
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: lock: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("entitlement/sqlstore: lock row missing (run Bootstrap): %v", err)
	}
	t := &tx{s: s, tx: sqlTx, keys: s.keys.WithTx(sqlTx)}
	if err := fn(t); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("entitlement/sqlstore: commit: %w", err)
	}
	return nil
}

// HasSealed implements entitlement.Store.
func (s *Store) HasSealed(ctx context.Context, userID string) (bool, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, s.q.hasSealed, userID); err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: has sealed: %w", err)
	}
	return n > 0, nil
}

// PruneEvents implements entitlement.Store.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q.prune, sqldb.T(before))
	if err != nil {
		return 0, fmt.Errorf("entitlement/sqlstore: prune: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("entitlement/sqlstore: prune: %w", err)
	}
	return n, nil
}

type tx struct {
	s    *Store
	tx   *sqlx.Tx
	keys *apikeysql.Store
}

func (t *tx) Keys() apikey.Store { return t.keys }

func (t *tx) MarkProcessed(ctx context.Context, e entitlement.Event) (bool, error) {
	res, err := t.tx.ExecContext(ctx, t.s.q.markEvent, e.ID, e.Type, sqldb.T(e.Created), sqldb.T(e.ReceivedAt))
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
	if _, err := t.tx.ExecContext(ctx, t.s.q.bind, c.ID, c.UserID, sqldb.T(c.BoundAt)); err != nil {
		return entitlement.Customer{}, fmt.Errorf("entitlement/sqlstore: bind customer: %w", err)
	}
	return t.Customer(ctx, c.ID)
}

func (t *tx) Customer(ctx context.Context, customerID string) (entitlement.Customer, error) {
	var r customerRow
	err := t.tx.GetContext(ctx, &r, t.s.q.customer, customerID)
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
	if err := t.tx.SelectContext(ctx, &rows, t.s.q.customersOf, userID); err != nil {
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
	err := t.tx.GetContext(ctx, &r, t.s.q.subscription, id)
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
	if err := t.tx.SelectContext(ctx, &rows, t.s.q.subscriptionsOf, customerID); err != nil {
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
	_, err := t.tx.ExecContext(ctx, t.s.q.putSubscription,
		s.ID, s.CustomerID, s.Status, strings.Join(s.PriceIDs, ","), deleted, sqldb.T(s.StateAt),
		s.FailedInvoice, sqldb.T(s.FailedInvoiceAt), sqldb.T(s.FailedAt),
		s.PaidInvoice, sqldb.T(s.PaidInvoiceAt), sqldb.T(s.UpdatedAt))
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: put subscription: %w", err)
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
	err := t.tx.GetContext(ctx, &r, t.s.q.entitlement, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return entitlement.Entitlement{}, entitlement.ErrNotFound
	}
	if err != nil {
		return entitlement.Entitlement{}, fmt.Errorf("entitlement/sqlstore: entitlement: %w", err)
	}
	return entitlement.Entitlement{UserID: r.UserID, Plan: r.Plan, KeyID: r.KeyID, Source: r.Source, UpdatedAt: r.UpdatedAt.Time}, nil
}

func (t *tx) PutEntitlement(ctx context.Context, e entitlement.Entitlement) error {
	if _, err := t.tx.ExecContext(ctx, t.s.q.putEntitlement, e.UserID, e.Plan, e.KeyID, e.Source, sqldb.T(e.UpdatedAt)); err != nil {
		return fmt.Errorf("entitlement/sqlstore: put entitlement: %w", err)
	}
	return nil
}

// Sealed keys are stored as standard base64 text, which both databases keep alike.

func (t *tx) PutSealed(ctx context.Context, k entitlement.SealedKey) error {
	_, err := t.tx.ExecContext(ctx, t.s.q.putSealed, k.UserID, k.KeyID, base64.StdEncoding.EncodeToString(k.Sealed), sqldb.T(k.CreatedAt))
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
	err := t.tx.GetContext(ctx, &r, t.s.q.takeSealed, userID)
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
