package quota

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// ErrNoKeyID is what Middleware hands to Config.OnError when keyID finds no key on
// the request: the authentication middleware is missing in front of it, a
// configuration error. It wraps ErrNotFound, so WriteError answers 403 and the
// request never reaches the handler unmetered.
var ErrNoKeyID = fmt.Errorf("quota: request carries no API key ID (is authentication installed before the quota middleware?): %w", ErrNotFound)

// Response header names set by Middleware.
const (
	HeaderLimit     = "X-Quota-Limit"
	HeaderRemaining = "X-Quota-Remaining"
	// HeaderReset carries the end of the cycle in unix seconds.
	HeaderReset = "X-Quota-Reset"
)

// Response details written by WriteError, as CONTRACT.md fixes them.
const (
	DetailExceeded    = "Monthly API quota exceeded"
	DetailInvalid     = "Invalid or revoked API key"
	DetailUnavailable = "Quota service temporarily unavailable"
)

// Config holds the optional settings of Middleware.
type Config struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// OnError answers a request that is refused or could not be metered: err is
	// ErrExceeded (quota headers and Retry-After are already set), ErrRevoked,
	// ErrNotFound or ErrNoKeyID (which wraps ErrNotFound), or a store error. Nil
	// means WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// Middleware consumes one call of the key's quota for every request before next
// runs. keyID returns the ID of the request's authenticated key (the server passes
// apikey's context accessor); the middleware must sit behind authentication.
//
// On success and on ErrExceeded it sets X-Quota-Limit, X-Quota-Remaining and
// X-Quota-Reset (unix seconds of the cycle's end); on ErrExceeded also Retry-After,
// the whole seconds until the cycle ends, at least 1. Headers are set before
// OnError runs, so a custom error writer keeps them. Every other failure goes to
// OnError with no quota headers; a store error fails closed (503 by default): the
// handler never runs unmetered.
func Middleware(s Store, keyID func(*http.Request) (string, bool), cfg Config) func(http.Handler) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnError == nil {
		cfg.OnError = WriteError
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := keyID(r)
			if !ok {
				cfg.OnError(w, r, ErrNoKeyID)
				return
			}
			now := cfg.Now()
			u, err := Consume(r.Context(), s, id, now)
			switch {
			case err == nil:
				SetHeaders(w.Header(), u)
				next.ServeHTTP(w, r)
			case errors.Is(err, ErrExceeded):
				h := w.Header()
				SetHeaders(h, u)
				h.Set("Retry-After", strconv.FormatInt(RetryAfter(u, now), 10))
				cfg.OnError(w, r, err)
			default:
				cfg.OnError(w, r, err)
			}
		})
	}
}

// SetHeaders sets X-Quota-Limit, X-Quota-Remaining and X-Quota-Reset from u,
// replacing any earlier values.
func SetHeaders(h http.Header, u Usage) {
	h.Set(HeaderLimit, strconv.FormatInt(u.Limit, 10))
	h.Set(HeaderRemaining, strconv.FormatInt(u.Remaining(), 10))
	h.Set(HeaderReset, strconv.FormatInt(u.Reset.Unix(), 10))
}

// RetryAfter returns the whole seconds from now until u's cycle ends, rounded up,
// and at least 1.
func RetryAfter(u Usage, now time.Time) int64 {
	d := u.Reset.Sub(now)
	secs := int64(d / time.Second)
	if d%time.Second > 0 {
		secs++
	}
	return max(secs, 1)
}

// WriteError is the default Config.OnError. It answers an RFC 9457 problem:
// ErrExceeded is 429 "Monthly API quota exceeded"; ErrRevoked and ErrNotFound
// (ErrNoKeyID included) are 403 "Invalid or revoked API key"; anything else is a
// store failure and 503, with a detail that reveals nothing of it.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	switch {
	case errors.Is(err, ErrExceeded):
		problem.Write(w, http.StatusTooManyRequests, DetailExceeded)
	case errors.Is(err, ErrRevoked), errors.Is(err, ErrNotFound):
		problem.Write(w, http.StatusForbidden, DetailInvalid)
	default:
		problem.Write(w, http.StatusServiceUnavailable, DetailUnavailable)
	}
}
