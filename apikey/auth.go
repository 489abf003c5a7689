package apikey

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
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
	// Cache sizes and times the cache of verified keys; the zero value is a cache
	// of 65536 entries (see CacheConfig).
	Cache CacheConfig
	// Now is the clock by which expiring keys expire: from Key.ExpiresAt on, by
	// this clock, the key is refused, also from the cache. Use the clock that
	// set the expiry (the gate's). nil means time.Now. (The cache ages its
	// entries by Cache.Now.)
	Now func() time.Time
}

// errRevokedKey is what Authenticate returns for a revoked key.
var errRevokedKey = fmt.Errorf("%w: %w", ErrInvalid, ErrRevoked)

// Authenticator turns raw keys into principals by looking their hashes up in a
// Store, through a cache (see CacheConfig). It is safe for concurrent use; the
// zero value is not usable, call NewAuthenticator.
type Authenticator struct {
	store  Store
	maxLen int
	now    func() time.Time // expiry clock
	cache  *cache           // nil: off
	state  channelState
}

// NewAuthenticator returns an Authenticator that looks keys up in s. If s
// implements Changes, the Authenticator watches it for as long as s lives, and
// forgets each key that s announces changed. Its change channel starts down (see
// SetChannel).
func NewAuthenticator(s Store, cfg Config) *Authenticator {
	a := &Authenticator{store: s, maxLen: cfg.MaxKeyLength, now: cfg.Now}
	if a.maxLen <= 0 {
		a.maxLen = defaultMaxKeyLength
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.cache = newCache(cfg.Cache, &a.state, a.now)
	if ch, ok := s.(Changes); ok && a.cache != nil {
		ch.Watch(func(hashes []string) { a.Forget(hashes...) })
	}
	return a
}

// Authenticate returns the principal of the raw key, as a request header carried
// it; surrounding whitespace is trimmed. It returns ErrMissing for an empty value;
// ErrInvalid, without a store lookup, for a key that is too long or holds anything
// but printable ASCII, and after the lookup for an unknown key, a revoked one or
// an expiring one from its ExpiresAt on by Config.Now (then the error also
// matches ErrRevoked); otherwise the store's error, wrapped
// (a failed dependency), which is never cached. No error holds the raw key. The
// principal's QuotaID is the key's, or its ID for a store that reports none.
//
// Answers come from the cache while its entry is fresh (see CacheConfig); a miss
// looks the hash up in the store, one lookup for all the concurrent misses of one
// key. Call it with a context that carries no uncommitted transaction on the
// store: what it reads is cached.
func (a *Authenticator) Authenticate(ctx context.Context, raw string) (Principal, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Principal{}, ErrMissing
	}
	if len(raw) > a.maxLen || !printableASCII(raw) {
		return Principal{}, ErrInvalid
	}
	var e entry
	var err error
	if c := a.cache; c != nil {
		sum := digest(raw)
		var ok bool
		if e, ok = c.get(sum); !ok {
			e, err = c.fill(ctx, a.store, sum)
		}
	} else {
		a.state.misses.Add(1)
		a.state.lookups.Add(1)
		e, err = lookup(ctx, a.store, Hash(raw), a.now)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("apikey: authenticate: %w", err)
	}
	switch e.kind {
	case known:
		return e.p, nil
	case revoked:
		return Principal{}, errRevokedKey
	}
	return Principal{}, ErrInvalid
}

// digest returns the SHA-256 of raw (Hash before hex) without allocating for a
// key of up to defaultMaxKeyLength bytes: []byte(raw) would, beyond 32 bytes.
func digest(raw string) [sha256.Size]byte {
	var buf [defaultMaxKeyLength]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], raw)])
	}
	return sha256.Sum256([]byte(raw))
}

// lookup asks s for the key of hash and returns it as an entry (not yet timed);
// an error is the store's, other than ErrNotFound. An expiring key that has
// expired by now (read after the store answered) is revoked.
func lookup(ctx context.Context, s Store, hash string, now func() time.Time) (entry, error) {
	k, err := s.ByHash(ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		return entry{kind: unknown}, nil
	case err != nil:
		return entry{}, err
	case !k.Active() || !k.ExpiresAt.IsZero() && k.Expired(now()):
		return entry{kind: revoked}, nil
	}
	quota := k.QuotaID
	if quota == "" {
		quota = k.ID
	}
	return entry{kind: known, p: Principal{KeyID: k.ID, UserID: k.UserID, Hash: k.Hash, Plan: k.Plan, QuotaID: quota, ExpiresAt: k.ExpiresAt}}, nil
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
