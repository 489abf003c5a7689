// Package apikey issues API keys, keeps them only as SHA-256 hashes, and turns the
// raw key a request carries into the Principal that made it.
//
// A raw key exists only in the value Generate or New returns: a Store keeps its
// lower-case hex SHA-256 (Key.Hash), its prefix and its last four characters (for
// masking), never the key itself. An Authenticator looks raw keys up in a Store;
// NewContext and FromContext carry the resulting Principal through a request, and
// Capture lets code that runs before authentication (an access log) read it too.
//
// Each user has at most one active key that is not expiring. A key spends the
// quota its QuotaID names (package quota keeps the counters); Store.Rotate hands
// the quota on to the successor, so rotating a key never resets its usage.
//
// # Expiring keys
//
// A rotation with a grace period (Store.Rotate) or a plan change with one
// (Store.Retire) does not revoke the old key: it stays active with an
// ExpiresAt, "expiring" (Key.Expiring), and authenticates until then beside its
// successor, spending the same quota. From ExpiresAt on the Authenticator
// refuses it as it refuses a revoked key, also from its cache, whose entry of
// an expiring key never outlives ExpiresAt; nothing needs to write the store
// at that moment. Stores keep its status active: StatusExpiring is only how
// Key.StatusAt shows it. RevokeUser revokes expiring keys too.
//
// apikey writes no HTTP answers: its errors are sentinels of tollgate's problem
// table, answered by the gate (401 ErrMissing, 403 ErrInvalid, 402
// ErrUpgradeRequired, 409 ErrActiveExists and ErrNoActiveKey, 404 ErrNotFound);
// any other error from a Store is a failed dependency (503).
//
// # Cache and revocation
//
// An Authenticator keeps what the store said of each hash it looked up (the
// principal, "revoked" or "unknown") in a bounded LRU, so that a request with a
// known key costs a hash and a map lookup, and a flood of made-up keys costs one
// store lookup per distinct key at most. It forgets a key when told that it
// changed: a store that implements Changes (memstore, apikey/sqlstore) tells it
// of this process's changes after they commit; apikey/pqnotify tells it of every
// process's changes on PostgreSQL. Whether such a channel covers every change
// is the Authenticator's channel state (SetChannel): while it is up, entries live
// CacheConfig.TTL (30 s), a backstop; while it is down (the default, a SQLite
// file another process also writes, a PostgreSQL listener that lost its
// connection), no entry older than FallbackTTL (1 s) is served. So a revoked or
// rotated-away key is refused by this process at once, and by every other
// process within a moment with a channel, within FallbackTTL without one.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// DefaultPrefix starts every key that Generate and New return when given no prefix
// of their own. An application picks a prefix that names it (say "acme_live_"), so
// that leaked keys are recognisable to secret scanners and to people.
const DefaultPrefix = "tk_"

// Status is a key's lifecycle state.
type Status string

// Key statuses. A key is created active (or, when imported, revoked) and, once
// revoked, stays revoked. Stores hold only StatusActive and StatusRevoked;
// StatusExpiring is what Key.StatusAt shows for an active key with an ExpiresAt
// still ahead (a Store refuses it as a status to store).
const (
	StatusActive   Status = "active"
	StatusRevoked  Status = "revoked"
	StatusExpiring Status = "expiring"
)

// MaxGrace is the longest grace period tollgate gives a replaced key (a rotation
// or a plan change with grace): seven days. Stores accept any grace of zero or
// more; the gate and the billing service refuse longer ones.
const MaxGrace = 7 * 24 * time.Hour

// Sentinel errors, matched with errors.Is. Stores return them as they are and wrap
// backend errors with %w and their package prefix; an error that matches none of
// these is a failed dependency.
var (
	// ErrNotFound: no key has that hash or ID (HTTP 404 where a client names a key).
	ErrNotFound = problem.New(problem.KeyNotFound, "apikey: key not found")
	// ErrRevoked: the key exists but is revoked. Authenticate returns it wrapped
	// together with ErrInvalid, whose answer (403) it shares.
	ErrRevoked = problem.New(problem.InvalidKey, "apikey: key revoked")
	// ErrActiveExists: Create was given an active key for a user who already has
	// one; each user has at most one (HTTP 409).
	ErrActiveExists = problem.New(problem.ActiveKeyExists, "apikey: user already has an active key")
	// ErrNoActiveKey: Rotate found no active key for the user that is not
	// expiring (HTTP 409).
	ErrNoActiveKey = problem.New(problem.NoActiveKey, "apikey: user has no active key")
	// ErrMissing: the request carried no key (HTTP 401).
	ErrMissing = problem.New(problem.MissingKey, "apikey: missing x-api-key")
	// ErrInvalid: the request's key is malformed, unknown or revoked (HTTP 403).
	ErrInvalid = problem.New(problem.InvalidKey, "apikey: invalid or revoked API key")
	// ErrUpgradeRequired: the key's plan ranks below the one a route requires
	// (HTTP 402). apikey knows no ranks and never returns it; the gate does.
	ErrUpgradeRequired = problem.New(problem.UpgradeRequired, "apikey: upgrade required for this endpoint")
)

// Key is a stored API key. It never holds the raw key. The zero value is no key;
// New returns one ready for Store.Create.
type Key struct {
	ID     string `db:"id" json:"id"`
	UserID string `db:"user_id" json:"user_id"`
	// Hash is the lower-case hex SHA-256 of the whole raw key (Hash).
	Hash string `db:"key_hash" json:"-"`
	// KeyPrefix and Last4 are kept for masking: the raw key's prefix and its last
	// four characters.
	KeyPrefix string `db:"key_prefix" json:"-"`
	Last4     string `db:"key_last4" json:"-"`
	// Plan names the key's plan; apikey gives plan names no meaning.
	Plan   string `db:"plan" json:"plan"`
	Status Status `db:"status" json:"status"`
	// QuotaID names the quota the key spends (package quota): its own ID for a new
	// key; a successor made by Rotate keeps its predecessor's, so rotation never
	// resets usage and never copies counters. Stores never report it empty.
	QuotaID   string    `db:"quota_id" json:"-"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
	// LastUsedAt is when the key was last used, as Create was given it: no Store
	// method updates it. RevokedAt is when the key was revoked. Each is zero when
	// unknown or not yet.
	LastUsedAt   time.Time `db:"last_used_at" json:"last_used_at,omitzero"`
	RevokedAt    time.Time `db:"revoked_at" json:"revoked_at,omitzero"`
	RevokeReason string    `db:"revoke_reason" json:"revoke_reason,omitempty"`
	// ExpiresAt, when set on an active key, is when the key stops working: a
	// rotation or plan change with a grace period replaced it (see Expiring).
	// Zero on a key that does not expire. A revoked key keeps the ExpiresAt it
	// had.
	ExpiresAt time.Time `db:"expires_at" json:"expires_at,omitzero"`
}

// Masked returns the key as it may be shown: "****…" and its last four characters.
func (k Key) Masked() string { return Mask(k.Last4) }

// Active reports whether the key's stored status is active, expiring or not
// (see Expiring), past its ExpiresAt or not (see Expired).
func (k Key) Active() bool { return k.Status == StatusActive }

// Expiring reports whether the key is active with an ExpiresAt: a rotation or a
// plan change with a grace period replaced it, and it works until ExpiresAt
// (which may have passed: see Expired). A user has at most one active key that
// is not expiring, and any number of expiring ones.
func (k Key) Expiring() bool { return k.Active() && !k.ExpiresAt.IsZero() }

// Expired reports whether the key has an ExpiresAt and now is not before it: from
// then on the Authenticator refuses the key.
func (k Key) Expired(now time.Time) bool { return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) }

// StatusAt returns the status the key is shown with at now: StatusExpiring for
// an expiring key before its ExpiresAt, StatusRevoked for a revoked key or an
// expiring one past it, StatusActive otherwise.
func (k Key) StatusAt(now time.Time) Status {
	switch {
	case !k.Active() || k.Expired(now):
		return StatusRevoked
	case k.Expiring():
		return StatusExpiring
	}
	return StatusActive
}

// Store keeps keys. Implementations are safe for concurrent use and agree on every
// point below (package storetest checks them). Every method takes the context
// first; times are passed in, so callers control the clock, and are stored in UTC
// at microsecond precision. A SQL store runs its statements in the transaction
// ctx carries, if any (see apikey/sqlstore).
type Store interface {
	// Create stores k and completes it in place: an empty ID gets NewID(), an
	// empty QuotaID the key's ID, an empty Status means active. k must have a
	// user, a hash and a creation time; it may have an ExpiresAt (an expiring
	// key). It returns ErrActiveExists if k is active, not expiring, and its
	// user already has an active key that is not expiring, and an error (not
	// ErrActiveExists) if a key with k's ID or hash is stored already.
	Create(ctx context.Context, k *Key) error

	// ByHash returns the key whose hash is hash, active or revoked, or ErrNotFound.
	// An expiring key is returned as it is stored, also past its ExpiresAt
	// (active, with that ExpiresAt): the Authenticator decides.
	ByHash(ctx context.Context, hash string) (Key, error)

	// ByID returns the key with that ID, active or revoked, or ErrNotFound.
	ByID(ctx context.Context, id string) (Key, error)

	// ListByUser returns the user's keys, newest first; none is an empty slice and
	// no error.
	ListByUser(ctx context.Context, userID string) ([]Key, error)

	// Revoke revokes the key with that ID at now, recording reason; an expiring
	// key too. Revoking a revoked key changes nothing and returns nil; an unknown
	// ID returns ErrNotFound.
	Revoke(ctx context.Context, id, reason string, now time.Time) error

	// RevokeUser revokes every active key of the user at now, recording reason,
	// expiring keys included (whether or not past their ExpiresAt), and returns
	// the keys it revoked, as they now are, newest first, so that a caller can
	// drop them from its caches; none is an empty slice and no error.
	RevokeUser(ctx context.Context, userID, reason string, now time.Time) ([]Key, error)

	// Rotate replaces the user's active key that is not expiring (the current
	// key) with next, in one atomic step: no reader sees zero or two current
	// keys. With grace 0 it revokes the old key at now; with grace > 0 the old
	// key stays active, expiring at now+grace (its ExpiresAt), so that both keys
	// work meanwhile. Keys that were expiring already keep their own ExpiresAt.
	// next must carry the new hash, prefix and last four; the store fills in the
	// rest (an empty ID gets a new one) and returns the old key as it now is
	// (revoked, or expiring). The successor is active, not expiring, created at
	// now, and keeps the old key's Plan and QuotaID, so both spend the same
	// quota: rotating never hands out a fresh monthly allowance. It returns
	// ErrNoActiveKey, changing nothing, if the user has no current key, and an
	// error, changing nothing, if grace is negative.
	//
	// Concurrent rotations for one user take effect one after another and all
	// succeed, each replacing the key the previous one created.
	Rotate(ctx context.Context, userID string, next *Key, now time.Time, grace time.Duration) (old Key, err error)

	// Retire makes the active key with that ID expire at expiresAt, spending the
	// quota quotaID on plan meanwhile: what a plan change with a grace period
	// does to the key it replaces, whose successor the caller then creates
	// (Create) with that quota. A key already expiring earlier keeps its
	// ExpiresAt (Retire never extends a key's life); a current key stops being
	// one. Retiring a revoked key, or one retired so already, changes nothing
	// and returns nil; an unknown ID returns
	// ErrNotFound; an empty quotaID or a zero expiresAt is an error that changes
	// nothing.
	Retire(ctx context.Context, id, plan, quotaID string, expiresAt time.Time) error

	// Touch records when keys were last used: for each key ID in used, its
	// LastUsedAt becomes the given time unless it is later already. Unknown IDs
	// are skipped. The gate calls it in batches, never once a request.
	Touch(ctx context.Context, used map[string]time.Time) error
}

// Changes is implemented by stores that announce key changes after they commit.
//
// Watch registers fn and returns the function that unregisters it. The store
// calls fn with the hashes of the keys a change created, revoked or retired
// (Create, Revoke, RevokeUser, Retire, Rotate: the old key's hash and the new
// one's), once the change is durable: at once for a change made outside a
// transaction, after the commit for one made inside it, never for one rolled
// back nor for a call that changed nothing. It never calls fn with an empty
// list. A key's ExpiresAt passing is no change: the Authenticator honours it
// without being told. fn runs in the goroutine that made the change, before that
// call returns (or before the transaction's commit returns); it must be quick,
// must not keep or modify the slice, and may call the store. Watchers see the changes of this process only; across
// processes, see apikey/sqlstore (PostgreSQL NOTIFY) and apikey/pqnotify.
//
// NewAuthenticator watches a store that implements Changes, so that its cache
// forgets a changed key at once.
type Changes interface {
	Watch(fn func(hashes []string)) (stop func())
}

// Generate returns a new raw key and its hash. The key is prefix followed by 43
// URL-safe base64 characters from crypto/rand (256 bits); an empty prefix means
// DefaultPrefix. A prefix holding anything but printable ASCII is an error, since
// Authenticate would refuse every key made with it.
func Generate(prefix string) (raw, hash string, err error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !printableASCII(prefix) {
		return "", "", errors.New("apikey: key prefix holds characters other than printable ASCII")
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	raw = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return raw, Hash(raw), nil
}

// New generates a raw key (see Generate) and an active Key for userID on plan that
// holds its hash, prefix and last four characters, created at now in UTC, ready
// for Store.Create (which fills in ID and QuotaID). The caller shows raw once and
// drops it.
func New(prefix, userID, plan string, now time.Time) (raw string, k Key, err error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	raw, hash, err := Generate(prefix)
	if err != nil {
		return "", Key{}, err
	}
	return raw, Key{
		UserID:    userID,
		Hash:      hash,
		KeyPrefix: prefix,
		Last4:     raw[len(raw)-4:],
		Plan:      plan,
		Status:    StatusActive,
		CreatedAt: now.UTC(),
	}, nil
}

// Hash returns the lower-case hex SHA-256 of the whole raw key.
func Hash(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// Mask returns "****…" followed by last4, the form in which a key may be shown.
func Mask(last4 string) string { return "****…" + last4 }

// NewID returns a new random key ID: "key_" and 24 hex characters.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "key_" + hex.EncodeToString(b[:])
}

// Principal is an authenticated key, as Authenticate returns it and a request's
// context carries it. It holds no raw key. The zero value is no principal.
type Principal struct {
	KeyID  string
	UserID string
	// Hash is the key's hex SHA-256; log at most its first 8 characters.
	Hash string
	Plan string
	// QuotaID names the quota the key spends (Key.QuotaID).
	QuotaID string
	// ExpiresAt is when an expiring key stops working (Key.ExpiresAt), zero for
	// a key that does not expire: a server may tell the client (a Sunset
	// header, RFC 8594).
	ExpiresAt time.Time
}

// ctxKey is the one context key of this package. Its value is a Principal (stored
// by NewContext) or a *capture (installed by Capture), so FromContext finds either
// with one lookup.
type ctxKey struct{}

// capture holds the first principal stored below a context made by Capture.
type capture struct{ p atomic.Pointer[Principal] }

// NewContext returns a context derived from ctx that carries p. If ctx was made by
// Capture and no principal was stored below it yet, p is also reported by
// FromContext on that captured context.
func NewContext(ctx context.Context, p Principal) context.Context {
	// One allocation: the context holds the principal, and the capture and
	// FromContext point into it (context.WithValue would box a copy besides).
	c := &principalCtx{Context: ctx, p: p}
	if cp, ok := ctx.Value(ctxKey{}).(*capture); ok {
		cp.p.CompareAndSwap(nil, &c.p)
	}
	return c
}

// principalCtx is the context NewContext makes: ctx's parent and the principal,
// answered for ctxKey as a *Principal, as context.WithValue would.
type principalCtx struct {
	context.Context
	p Principal
}

func (c *principalCtx) Value(key any) any {
	if key == (ctxKey{}) {
		return &c.p
	}
	return c.Context.Value(key)
}

// String describes the context as context.WithValue's does, without the
// principal's fields.
func (c *principalCtx) String() string {
	return fmt.Sprintf("%v.WithValue(apikey principal)", c.Context)
}

// FromContext returns the principal ctx carries: the one NewContext stored in ctx
// or in a context ctx derives from, or else, if ctx was made by Capture (or derives
// from one), the first one stored in a context derived from it. It is safe to call
// concurrently with NewContext.
func FromContext(ctx context.Context) (Principal, bool) {
	switch v := ctx.Value(ctxKey{}).(type) {
	case *Principal:
		return *v, true
	case *capture:
		if p := v.p.Load(); p != nil {
			return *p, true
		}
	}
	return Principal{}, false
}

// Capture returns a context on which FromContext also reports a principal that
// NewContext stores later in any context derived from it (the first one stored):
// the access log of a server reads identity with the one accessor, without a
// second bag. Call it before the request reaches the gate and read the principal
// after the handler returns. It returns ctx itself when ctx already carries a
// principal or a capture, so nested Captures share one. Storing and reading are
// safe for concurrent use.
func Capture(ctx context.Context) context.Context {
	if ctx.Value(ctxKey{}) != nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, new(capture))
}
