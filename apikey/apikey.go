// Package apikey issues API keys, stores them only as SHA-256 hashes, and
// authenticates requests that carry them.
//
// A raw key exists only in the value Generate returns: stores keep its hex SHA-256
// hash, its prefix and its last four characters (for masking), never the key.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
)

// Prefix starts every key Generate returns, so leaked keys are recognisable to
// secret scanners and to people.
const Prefix = "rr_live_"

// Status is a key's lifecycle state.
type Status string

// Key statuses.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
)

// Sentinel errors. Stores wrap backend errors with %w and return these as they are,
// so callers match them with errors.Is.
var (
	// ErrNotFound: no key has that hash or ID.
	ErrNotFound = errors.New("apikey: key not found")
	// ErrRevoked: the key exists but is revoked.
	ErrRevoked = errors.New("apikey: key revoked")
	// ErrActiveExists: the user already has an active key; each user has at most one.
	ErrActiveExists = errors.New("apikey: user already has an active key")
	// ErrNoActiveKey: Rotate found no active key for the user.
	ErrNoActiveKey = errors.New("apikey: user has no active key")
	// ErrMissing: the request carried no key (HTTP 401).
	ErrMissing = errors.New("apikey: missing x-api-key")
	// ErrInvalid: the request's key is unknown or revoked (HTTP 403).
	ErrInvalid = errors.New("apikey: invalid or revoked API key")
	// ErrUpgradeRequired: the key's plan ranks below the route's (HTTP 402).
	ErrUpgradeRequired = errors.New("apikey: upgrade required for this endpoint")
)

// Key is a stored API key. It never holds the raw key.
type Key struct {
	ID     string `db:"id" json:"id"`
	UserID string `db:"user_id" json:"user_id"`
	// Hash is the lower-case hex SHA-256 of the whole raw key.
	Hash string `db:"key_hash" json:"-"`
	// KeyPrefix and Last4 are kept for masking: the raw key's prefix and its last
	// four characters.
	KeyPrefix string `db:"key_prefix" json:"-"`
	Last4     string `db:"key_last4" json:"-"`
	Plan      string `db:"plan" json:"plan"`
	Status    Status `db:"status" json:"status"`
	// MonthlyCallLimit, CallsUsed and CycleStart are the key's quota as the quota
	// package keeps it; stores report the values current at read time.
	MonthlyCallLimit int64     `db:"monthly_call_limit" json:"monthly_call_limit"`
	CallsUsed        int64     `db:"calls_used" json:"calls_used"`
	CycleStart       time.Time `db:"cycle_start" json:"cycle_start"`
	CreatedAt        time.Time `db:"created_at" json:"created_at"`
	// LastUsedAt and RevokedAt are zero when the key was never used or revoked.
	// quota/sqlstore sets last_used_at in the same statement that counts a call.
	LastUsedAt   time.Time `db:"last_used_at" json:"last_used_at,omitzero"`
	RevokedAt    time.Time `db:"revoked_at" json:"revoked_at,omitzero"`
	RevokeReason string    `db:"revoke_reason" json:"revoke_reason,omitempty"`
}

// Masked returns the key as it may be shown: "****…" and its last four characters.
func (k Key) Masked() string { return Mask(k.Last4) }

// Active reports whether the key is active.
func (k Key) Active() bool { return k.Status == StatusActive }

// Store keeps keys. Implementations are safe for concurrent use. Every method takes
// the context first; times are passed in, so callers control the clock.
type Store interface {
	// Create stores k as given. An empty k.ID is filled with a new ID; an empty
	// Status means active. It returns ErrActiveExists if k is active and its user
	// already has an active key.
	Create(ctx context.Context, k *Key) error

	// ByHash returns the key whose hash is hash, active or revoked, or ErrNotFound.
	ByHash(ctx context.Context, hash string) (Key, error)

	// ByID returns the key with that ID, or ErrNotFound.
	ByID(ctx context.Context, id string) (Key, error)

	// ListByUser returns the user's keys, newest first; none is an empty slice and
	// no error.
	ListByUser(ctx context.Context, userID string) ([]Key, error)

	// Revoke revokes the key with that ID at now, recording reason. Revoking a
	// revoked key changes nothing and returns nil; an unknown ID returns
	// ErrNotFound.
	Revoke(ctx context.Context, id, reason string, now time.Time) error

	// RevokeUser revokes every active key of the user and returns how many it
	// revoked (0 and no error when there were none).
	RevokeUser(ctx context.Context, userID, reason string, now time.Time) (int, error)

	// Rotate revokes the user's active key and creates next in its place, with the
	// old key's plan and monthly_call_limit, in one atomic step: no reader sees
	// zero or two active keys. next must carry the new hash, prefix and last four;
	// the store fills the rest and returns the revoked key. ErrNoActiveKey if the
	// user has no active key.
	//
	// The successor also keeps the old key's calls_used and cycle_start: a fresh
	// quota on rotation would let anyone reset their monthly allowance at will.
	// Concurrent rotations for one user take effect one after another and all
	// succeed, each revoking the key the previous one created.
	Rotate(ctx context.Context, userID string, next *Key, now time.Time) (old Key, err error)
}

// Generate returns a new raw key and its hash. The key is Prefix followed by 43
// URL-safe base64 characters from crypto/rand (256 bits).
func Generate() (raw, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	raw = Prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return raw, Hash(raw), nil
}

// New generates a raw key and a Key for userID that holds its hash, prefix and last
// four characters, ready for Store.Create. The caller shows raw once and drops it.
func New(userID, plan string, limit int64, now time.Time) (raw string, k Key, err error) {
	raw, hash, err := Generate()
	if err != nil {
		return "", Key{}, err
	}
	now = now.UTC()
	return raw, Key{
		UserID:           userID,
		Hash:             hash,
		KeyPrefix:        Prefix,
		Last4:            raw[len(raw)-4:],
		Plan:             plan,
		Status:           StatusActive,
		MonthlyCallLimit: limit,
		CycleStart:       now,
		CreatedAt:        now,
	}, nil
}

// Hash returns the lower-case hex SHA-256 of the whole raw key.
func Hash(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// Mask returns "****…" followed by last4, the form in which a key may be shown.
func Mask(last4 string) string { return "****…" + last4 }

// NewID returns a new random key ID ("key_" and 24 hex characters).
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "key_" + hex.EncodeToString(b[:])
}

// Principal is the authenticated key that the middleware puts in the request
// context. It carries no raw key.
type Principal struct {
	KeyID  string
	UserID string
	// Hash is the key's hex SHA-256; log at most its first 8 characters.
	Hash  string
	Plan  string
	Limit int64
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal the middleware stored in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
