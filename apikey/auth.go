package apikey

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// defaultMaxKeyLength is the longest raw key accepted when Config sets no limit:
// far more than a key from Generate (a prefix and 43 characters), little enough
// that a hostile header costs nothing to refuse.
const defaultMaxKeyLength = 256

// Config holds an Authenticator's optional settings. The zero value is usable.
// Which request header carries the key is the gate's business, not apikey's.
type Config struct {
	// MaxKeyLength is the longest key accepted, after trimming; longer values are
	// ErrInvalid without a store lookup. Zero or less means 256.
	MaxKeyLength int
}

// Authenticator turns raw keys into principals by looking their hashes up in a
// Store. It is safe for concurrent use; the zero value is not usable, call
// NewAuthenticator.
type Authenticator struct {
	store  Store
	maxLen int
}

// NewAuthenticator returns an Authenticator that looks keys up in s.
func NewAuthenticator(s Store, cfg Config) *Authenticator {
	a := &Authenticator{store: s, maxLen: cfg.MaxKeyLength}
	if a.maxLen <= 0 {
		a.maxLen = defaultMaxKeyLength
	}
	return a
}

// Authenticate returns the principal of the raw key, as a request header carried
// it; surrounding whitespace is trimmed. It returns ErrMissing for an empty value;
// ErrInvalid, without a store lookup, for a key that is too long or holds anything
// but printable ASCII, and after the lookup for an unknown key or a revoked one
// (then the error also matches ErrRevoked); otherwise the store's error, wrapped
// (a failed dependency). No error holds the raw key. The principal's QuotaID is
// the key's, or its ID for a store that reports none.
func (a *Authenticator) Authenticate(ctx context.Context, raw string) (Principal, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Principal{}, ErrMissing
	}
	if len(raw) > a.maxLen || !printableASCII(raw) {
		return Principal{}, ErrInvalid
	}
	k, err := a.store.ByHash(ctx, Hash(raw))
	switch {
	case errors.Is(err, ErrNotFound):
		return Principal{}, ErrInvalid
	case err != nil:
		return Principal{}, fmt.Errorf("apikey: authenticate: %w", err)
	case !k.Active():
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalid, ErrRevoked)
	}
	quota := k.QuotaID
	if quota == "" {
		quota = k.ID
	}
	return Principal{KeyID: k.ID, UserID: k.UserID, Hash: k.Hash, Plan: k.Plan, QuotaID: quota}, nil
}

// printableASCII reports whether s holds only visible ASCII characters, the only
// ones a key can contain.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}
