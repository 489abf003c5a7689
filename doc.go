// Package tollgate protects an HTTP API with API keys, monthly quotas and per-plan
// burst limits, in one call:
//
//	gate, err := tollgate.New(tollgate.Stores{Keys: keys, Quotas: quotas}, plans, tollgate.Config{})
//	mux.Handle("GET /reports", gate.Require("pro")(reports))
//
// A gated request passes these checks, in this order, and reaches the handler only
// when all pass:
//
//  1. a key is present in the x-api-key header (else 401 "Missing x-api-key");
//  2. the key is known and active (else 403 "Invalid or revoked API key");
//  3. its plan ranks at least the route's (else 402 "Upgrade required for this endpoint");
//  4. its plan's burst limit has room (else 429 "Rate limit exceeded", nothing spent);
//  5. its monthly quota has a call left (else 429 "Monthly API quota exceeded").
//
// A request whose key is missing or unknown spends its client address's budget of the
// anonymous plan first, so floods of guessed keys are limited like any anonymous
// traffic: once that budget is spent it gets 429 instead of 401 or 403.
//
// A call counts only when the handler serves it: an answer of 400 or above (bad input,
// not found, the handler's own failure) gives the call back (Config.Charge decides).
//
// # Plans
//
// The plan catalog (entitlement.Catalog) is the one place plan data lives: each plan's
// rank, monthly call limit, burst rate (ulule format, "600-M") and Stripe prices. The
// gate reads ranks and rates from it; the entitlement package reads limits and prices
// for billing. Gate.Issue issues a key with its quota in one call on every backend.
//
// # Responses
//
// Successes and quota refusals carry X-Quota-Limit, X-Quota-Remaining and
// X-Quota-Reset (unix seconds of the cycle's end); every rate-limited answer carries
// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset and the IETF draft's
// RateLimit-Policy and RateLimit; every 429 carries Retry-After in whole seconds (at
// least 1). Config.OmitHeaders leaves out families of these headers (each header
// costs net/http a little on every answer): the IETF draft's pair alone carries
// the burst limit and the quota both. Refusals are application/problem+json (RFC 9457) bodies written by
// WriteError from one table; a failed dependency (the key or quota store, or the
// burst store under Config.BurstFailClosed) is a 503 with Retry-After, never a 500.
//
// Keys and quotas fail closed: the quota guards money. The burst limiter fails open
// by default: burst limits protect capacity, and a request let through while Redis is
// down is still counted against its monthly quota.
//
// # Identity
//
// The handler reads the caller with apikey.FromContext, the one accessor of request
// identity. An access log that wraps the whole server wraps its request context with
// apikey.Capture first; apikey.FromContext on that context then reports the principal
// the gate authenticated further down.
//
// # Stores
//
// Keys, quotas and burst counters each sit behind a Store interface of their own
// package (apikey, quota, ratelimit), with memory stores for one process and shared
// stores for several replicas: apikey/sqlstore and quota/sqlstore on PostgreSQL or
// SQLite, ratelimit/redisstore on Redis. Gate.Bootstrap prepares the schema of the SQL
// stores it was given. SQLiteDSN returns the DSN the SQLite stores are tuned for.
package tollgate
