package apikey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/releaseradar/tollgate/internal/problem"
)

// The detail sentences of the default error responses (CONTRACT.md).
const (
	detailMissing     = "Missing x-api-key"
	detailInvalid     = "Invalid or revoked API key"
	detailUpgrade     = "Upgrade required for this endpoint"
	detailUnavailable = "API key check temporarily unavailable"
)

// Config holds an Authenticator's optional settings. The zero value is usable.
type Config struct {
	// Header is the request header that carries the key. Empty means "x-api-key".
	Header string
	// Rank returns a plan's rank, compared with the rank a route requires. Nil ranks
	// every plan 0, so only Require(0) or lower admits anyone.
	Rank func(plan string) int
	// MaxKeyLength is the longest key accepted, after trimming. Longer values are
	// ErrInvalid without a store lookup. Zero means 256.
	MaxKeyLength int
	// OnError answers a refused request: err matches ErrMissing, ErrInvalid or
	// ErrUpgradeRequired, or wraps a store error. Nil means WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// Authenticator checks the keys that requests carry against a Store. It is safe for
// concurrent use.
type Authenticator struct {
	store   Store
	header  string
	rank    func(plan string) int
	maxLen  int
	onError func(w http.ResponseWriter, r *http.Request, err error)
}

// NewAuthenticator returns an Authenticator that looks keys up in s.
func NewAuthenticator(s Store, cfg Config) *Authenticator {
	a := &Authenticator{store: s, header: cfg.Header, rank: cfg.Rank, maxLen: cfg.MaxKeyLength, onError: cfg.OnError}
	if a.header == "" {
		a.header = "x-api-key"
	}
	if a.rank == nil {
		a.rank = func(string) int { return 0 }
	}
	if a.maxLen <= 0 {
		a.maxLen = 256
	}
	if a.onError == nil {
		a.onError = WriteError
	}
	return a
}

// Authenticate returns the principal of the raw key, as a request header carried
// it. Surrounding whitespace is trimmed. It returns ErrMissing for an empty value;
// ErrInvalid for a key that is too long, holds anything but printable ASCII, is
// unknown, or is revoked (then the error also matches ErrRevoked); otherwise the
// store's error, wrapped. No error holds the raw key.
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
	return Principal{KeyID: k.ID, UserID: k.UserID, Hash: k.Hash, Plan: k.Plan, Limit: k.MonthlyCallLimit}, nil
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

// Require returns middleware that admits a request only if its key is present
// (else 401), known and active (else 403), and of a plan whose rank is at least
// minRank (else 402), checked in that order; refusals go to Config.OnError. An
// admitted request reaches next with its Principal in the context (FromContext).
// On a 402 the request handed to OnError carries the Principal too.
func (a *Authenticator) Require(minRank int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := a.Authenticate(r.Context(), r.Header.Get(a.header))
			if err != nil {
				a.onError(w, r, err)
				return
			}
			r = r.WithContext(NewContext(r.Context(), p))
			if a.rank(p.Plan) < minRank {
				a.onError(w, r, ErrUpgradeRequired)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// WriteError is the default Config.OnError: an application/problem+json response
// of 401 "Missing x-api-key" for ErrMissing, 403 "Invalid or revoked API key" for
// ErrInvalid, ErrRevoked and ErrNotFound, 402 "Upgrade required for this endpoint"
// for ErrUpgradeRequired, and 503 for anything else (a store failure), whose body
// says nothing about the cause.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrMissing):
		problem.Write(w, http.StatusUnauthorized, detailMissing)
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrRevoked), errors.Is(err, ErrNotFound):
		problem.Write(w, http.StatusForbidden, detailInvalid)
	case errors.Is(err, ErrUpgradeRequired):
		problem.Write(w, http.StatusPaymentRequired, detailUpgrade)
	default:
		problem.Write(w, http.StatusServiceUnavailable, detailUnavailable)
	}
}
