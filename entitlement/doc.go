// Package entitlement turns Stripe billing events into API keys: it verifies the
// webhook, works out the plan each user should have and issues, replaces or revokes
// their key when that plan changes.
//
// The plan catalog (Catalog, DefaultCatalog) is the project's one source of plan
// data. A Service serves Stripe's webhook (POST /billing/webhook), hands a key it
// issued to its owner exactly once (Reveal), and lets an operator grant a plan by
// hand (Grant). Its state lives in a Store: entitlement/memstore keeps it in memory,
// entitlement/sqlstore in PostgreSQL or SQLite next to the api_keys table, and
// entitlement/storetest is the suite both pass.
//
// # How events become keys
//
// Stripe delivers events at least once and in no particular order, so the Service
// never acts on an event as a command. Each event only updates what the store knows
// of a subscription (its status, its prices, its unpaid invoice) or binds a Stripe
// customer to a user. The Service then works out the plan the user should have from
// everything known and compares it with the plan it last applied: only a difference
// revokes the user's keys and issues a new one. Renewals, metadata edits,
// cancel_at_period_end toggles, duplicates and stale events change nothing.
//
// An event ID takes effect at most once: it is recorded in the same transaction as
// the state it changes and the keys it issues or revokes.
package entitlement
