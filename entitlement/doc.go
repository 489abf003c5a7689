// Package entitlement turns Stripe billing events into API keys, sells and bills
// plans through Stripe, and holds the plan catalog.
//
// The Catalog is the one place plan data lives: each Plan's rank, monthly call
// limit, burst rate, the Stripe prices that buy it (and the metered price that
// bills its usage) and the Stripe features that grant it. The application defines
// it and checks it with Catalog.Validate; the gate reads ranks and rates from it,
// and the Service limits and prices.
//
// A Service serves Stripe's webhook (POST /billing/webhook), works out the plan each
// user should have and issues, replaces or revokes their key when that plan
// changes; it hands a key it issued to its owner exactly once (Reveal), and lets an
// operator grant a plan by hand (Grant). Keys are issued through a KeyIssuer, which
// the application implements over its key and quota stores (entitlement imports
// neither). The Service's own state lives in a Store: entitlement/memstore keeps it
// in memory, entitlement/sqlstore in PostgreSQL or SQLite, and entitlement/storetest
// is the suite both pass.
//
// # How events become keys
//
// Stripe delivers events at least once and in no particular order, so the Service
// never acts on an event as a command. Each event only updates what the store knows
// of a subscription (its status, its prices, its unpaid invoice) or of a customer's
// active entitlements, or binds a Stripe customer to a user. The Service then works
// out the plan the user should have from everything known and compares it with the
// plan it last applied: only a difference revokes the user's keys and issues a new
// one. Renewals, metadata edits, cancel_at_period_end toggles, duplicates and stale
// events change nothing. A checkout session binds, and never grants by itself: a
// checkout paid by a delayed method (a bank debit) grants once its subscription is
// active, whichever of Stripe's events arrives first.
//
// A change from one paid plan to another may keep the old key working for
// Config.RotateGrace beside the new one (KeyIssuer.Issue's grace): it runs on the
// new plan and spends the new key's quota meanwhile, so that the customer can
// deploy the new key without downtime and without a second allowance. Losing the
// paid plan (a cancellation, a failed payment) revokes every key at once,
// expiring ones included.
//
// An event ID takes effect at most once: it is recorded in the same transaction as
// the state it changes. Store.Update hands its function a context that carries the
// transaction, and the Service calls the KeyIssuer with it, so on a SQL database
// whose key and quota stores join transactions through the context (apikey/sqlstore,
// quota/sqlstore) the keys issued or revoked commit or roll back with the event.
//
// # Selling plans
//
// With Config.Billing, Service.Checkout starts a purchase (a Stripe Checkout
// Session for the plan's price, reusing the user's Stripe customer) and
// Service.Portal opens the Customer Portal for a user who has a customer. Stripe's
// failures are ErrStripe, a failed dependency; without an API key both answer
// ErrBillingNotConfigured. NewStripeBackend makes a stripe-go backend (on another
// base URL, for tests against stripe-mock) that logs through slog.
//
// # Usage and metered billing
//
// A Ledger keeps the calls served per key per minute; the gate writes it in
// batches. A Reporter sends each key's closed periods to a Stripe Billing Meter as
// meter events with deterministic identifiers (MeterIdentifier), and marks in the
// MeterLedger what it sent, so that neither a retry nor a restart bills twice and
// nothing is lost to an outage; MeterLedger.Totals compares what was served with
// what was reported. memstore and sqlstore are MeterLedgers too.
//
// # Errors
//
// The package's sentinel errors (ErrNotFound, ErrUnknownPlan, ErrNoCustomer, the
// webhook's refusals, …) each have a row in tollgate's one table of problems, so
// tollgate.WriteError answers them with their own status and detail. The webhook
// writes its refusals from the same table; a store failure while it applies a
// verified event is a 503 with Retry-After, which Stripe retries, and a bad body
// is never a 5xx.
package entitlement
