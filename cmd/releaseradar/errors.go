package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
)

// errNoSession: a dashboard request carried neither a bearer token nor the
// session cookie.
var errNoSession = errors.New("releaseradar: missing dashboard token")

// statusFor is the one table that turns the sentinel errors of every package
// into an HTTP status and the problem detail clients read; every middleware's
// and the market handlers' OnError is errorWriter.write. The first match wins.
// The market's errors carry their own detail (marketDetail): the parameter
// named, or what was not found; the detail here answers a bare sentinel. (The
// billing webhook answers its own refusals, as entitlement documents.)
var statusFor = []struct {
	err    error
	status int
	detail string
}{
	{apikey.ErrMissing, http.StatusUnauthorized, "Missing x-api-key"},
	{apikey.ErrInvalid, http.StatusForbidden, "Invalid or revoked API key"},
	{apikey.ErrUpgradeRequired, http.StatusPaymentRequired, "Upgrade required for this endpoint"},
	{ratelimit.ErrLimited, http.StatusTooManyRequests, "Rate limit exceeded"},
	{ratelimit.ErrUnavailable, http.StatusServiceUnavailable, "Service temporarily unavailable"},
	{quota.ErrExceeded, http.StatusTooManyRequests, "Monthly API quota exceeded"},
	// A key revoked between authentication and counting is refused like any
	// revoked key.
	{quota.ErrRevoked, http.StatusForbidden, "Invalid or revoked API key"},
	{quota.ErrNotFound, http.StatusForbidden, "Invalid or revoked API key"},
	{errNoSession, http.StatusUnauthorized, "Missing dashboard token"},
	{session.ErrInvalid, http.StatusUnauthorized, "Invalid or expired dashboard token"},
	{web.ErrBadToken, http.StatusUnauthorized, "Invalid or expired dashboard token"},
	{web.ErrNoToken, http.StatusBadRequest, "Missing dashboard token"},
	{web.ErrCrossOrigin, http.StatusForbidden, "Cross-site request refused"},
	{web.ErrBadRequest, http.StatusBadRequest, "Malformed sign-in request"},
	{apikey.ErrNoActiveKey, http.StatusConflict, "No active key to rotate"},
	{entitlement.ErrNothingToReveal, http.StatusNotFound, "No key waiting to be revealed"},
	{errStoreUnavailable, http.StatusServiceUnavailable, "Service temporarily unavailable"},
	{errNoRoute, http.StatusNotFound, "No such route"},
	{errMethod, http.StatusMethodNotAllowed, "Method not allowed on this route"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "Request body larger than 64 KiB"},
	{market.ErrInvalid, http.StatusBadRequest, "Invalid request"},
	{market.ErrNotFound, http.StatusNotFound, "Not found"},
}

// errorWriter answers every refused or failed request of the server; it is the
// OnError of every middleware. Refusals are counted; unexpected errors are logged
// and answered 500 without their text.
type errorWriter struct {
	log *slog.Logger
	obs *observer
}

func (e *errorWriter) write(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range statusFor {
		if !errors.Is(err, m.err) {
			continue
		}
		detail := m.detail
		switch m.err {
		case market.ErrInvalid, market.ErrNotFound:
			detail = marketDetail(err, detail)
		case quota.ErrExceeded:
			e.obs.quotaRefusal(planOf(r))
		case ratelimit.ErrUnavailable:
			e.log.ErrorContext(r.Context(), "request refused: burst limiter unavailable", "path", logPath(r.URL.Path), "err", err)
		}
		problem.Write(w, m.status, detail)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		problem.Write(w, http.StatusServiceUnavailable, "Request canceled")
		return
	}
	e.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", logPath(r.URL.Path), "err", err)
	problem.Write(w, http.StatusInternalServerError, "Internal server error")
}

// marketDetail returns the sentence a market error carries: an
// *market.InputError names the parameter ("Invalid parameter \"limit\": …"), a
// *market.NotFoundError what was missing ("Event not found"). Otherwise it
// returns fallback.
func marketDetail(err error, fallback string) string {
	var in *market.InputError
	var nf *market.NotFoundError
	switch {
	case errors.As(err, &in):
		return in.Detail()
	case errors.As(err, &nf):
		return nf.Detail()
	}
	return fallback
}

// planOf returns the plan of an authenticated request, or "public".
func planOf(r *http.Request) string {
	if p, ok := apikey.FromContext(r.Context()); ok {
		return p.Plan
	}
	return entitlement.Public
}
