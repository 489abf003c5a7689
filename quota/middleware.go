package quota

import (
	"context"
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
	// Charge reports whether the handler's answer with that status counts against
	// the quota; a call that does not count is given back (Store.Release) once the
	// handler returns. Nil charges statuses below 400: the handler's 4xx and 5xx
	// answers (bad input, not found, its own failures) are given back. The
	// middleware's own refusals never reach Charge and never count.
	Charge func(status int) bool
}

// chargeServed is the default Config.Charge.
func chargeServed(status int) bool { return status < http.StatusBadRequest }

// Middleware consumes one call of the key's quota before next runs, and gives it
// back after next returns if Config.Charge says next's answer does not count (by
// default, a 4xx or 5xx). keyID returns the ID of the request's authenticated key
// (the server passes apikey's context accessor); the middleware must sit behind
// authentication.
//
// On success and on ErrExceeded it sets X-Quota-Limit, X-Quota-Remaining and
// X-Quota-Reset (unix seconds of the cycle's end). On success they are set again
// when next writes its status (a handler that never writes answers 200), with
// Remaining counting the call back if it will be given back. On ErrExceeded it
// also sets Retry-After, the whole seconds until the cycle ends, at least 1.
// Headers are set before OnError runs, so a custom error writer keeps them. Every
// other failure goes to OnError with no quota headers; a store error fails closed
// (503 by default): the handler never runs unmetered.
//
// The call is held while next runs, so a concurrent request may be refused for a
// call that is then given back. A failed give-back is ignored: it only leaves the
// call counted, the safe direction; so does a handler that panics.
func Middleware(s Store, keyID func(*http.Request) (string, bool), cfg Config) func(http.Handler) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnError == nil {
		cfg.OnError = WriteError
	}
	if cfg.Charge == nil {
		cfg.Charge = chargeServed
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
				m := &meter{ResponseWriter: w, u: u, charge: cfg.Charge}
				next.ServeHTTP(m, r)
				if m.decide(http.StatusOK) {
					return
				}
				// The request is answered; giving the call back must not depend on
				// the client still being there.
				_ = s.Release(context.WithoutCancel(r.Context()), id, 1, u.CycleStart)
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

// meter is the ResponseWriter next sees: on the first status it decides whether
// the call counts and sets the quota headers accordingly.
type meter struct {
	http.ResponseWriter
	u       Usage
	charge  func(status int) bool
	decided bool
	charged bool
}

// decide settles the call on the answer's status, once, and reports whether it
// counts. Unless it does, the headers show the call given back.
func (m *meter) decide(status int) bool {
	if m.decided {
		return m.charged
	}
	m.decided = true
	m.charged = m.charge(status)
	if !m.charged {
		u := m.u
		u.Used = max(u.Used-1, 0)
		SetHeaders(m.Header(), u)
	}
	return m.charged
}

func (m *meter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		m.decide(status)
	}
	m.ResponseWriter.WriteHeader(status)
}

func (m *meter) Write(b []byte) (int, error) {
	m.decide(http.StatusOK)
	return m.ResponseWriter.Write(b)
}

// Flush implements http.Flusher: a flush sends the headers, with a 200 unless a
// status was written.
func (m *meter) Flush() { _ = m.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (m *meter) FlushError() error {
	m.decide(http.StatusOK)
	return http.NewResponseController(m.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer (Hijack,
// deadlines, full duplex).
func (m *meter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

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
