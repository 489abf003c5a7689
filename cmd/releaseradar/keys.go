package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/quota"
)

// revealer hands out keys that the billing webhook sealed for their owner
// (entitlement.Service).
type revealer interface {
	// Reveal returns the user's sealed key once; entitlement.ErrNothingToReveal when
	// there is none.
	Reveal(ctx context.Context, userID string) (string, error)
	// Pending reports whether a sealed key waits for the user.
	Pending(ctx context.Context, userID string) (bool, error)
}

// dashboard serves GET /keys, POST /keys/rotate and POST /keys/reveal to the user a
// session token names. Every query is scoped to that user: no route takes a user
// or key ID from the request.
type dashboard struct {
	keys apikey.Store
	gate *tollgate.Gate
	// spend counts a request with a missing or invalid token against its
	// address's burst budget (tollgate.Gate.SpendAddress); false: it has been
	// answered 429.
	spend  func(w http.ResponseWriter, r *http.Request) bool
	reveal revealer
	verify func(token string) (userID string, err error)
	fail   func(w http.ResponseWriter, r *http.Request, err error)
	now    func() time.Time
	cycle  time.Duration // the quota cycle, for cycle_resets_at
}

// userHandler is a handler for one authenticated dashboard user.
type userHandler func(w http.ResponseWriter, r *http.Request, userID string)

// handler authenticates the request's dashboard token (Authorization: Bearer or
// the rr_session cookie) and calls h with its user. A request whose token is
// missing or does not verify spends its address's burst budget before its 401, so
// that guessing tokens gets 429 as guessing API keys does. A cookie-authenticated
// POST must also come from the server's own origin (web.RequireOrigin).
func (d *dashboard) handler(h userHandler) http.Handler {
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := web.Token(r)
		var user string
		var err error = errNoSession
		if token != "" {
			user, err = d.verify(token)
		}
		if err != nil {
			if d.spend(w, r) {
				d.fail(w, r, err)
			}
			return
		}
		h(w, r, user)
	})
	return web.RequireOrigin(web.Config{OnError: d.fail})(authed)
}

// keyView is a key as GET /keys shows it: masked, without hash or prefix.
type keyView struct {
	ID               string     `json:"id"`
	Masked           string     `json:"masked"`
	Plan             string     `json:"plan"`
	Status           string     `json:"status"`
	MonthlyCallLimit int64      `json:"monthly_call_limit"`
	CallsUsed        int64      `json:"calls_used"`
	CycleStart       time.Time  `json:"cycle_start"`
	CycleResetsAt    time.Time  `json:"cycle_resets_at"`
	CreatedAt        time.Time  `json:"created_at"`
	LastUsedAt       *time.Time `json:"last_used_at"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
}

// viewOf shows k with the usage of the quota it spends.
func viewOf(k apikey.Key, u quota.Usage, cycle time.Duration) keyView {
	v := keyView{
		ID:               k.ID,
		Masked:           k.Masked(),
		Plan:             k.Plan,
		Status:           string(k.Status),
		MonthlyCallLimit: u.Limit,
		CallsUsed:        u.Used,
		CycleStart:       u.CycleStart.UTC(),
		CycleResetsAt:    quota.CycleEnd(u.CycleStart, cycle).UTC(),
		CreatedAt:        k.CreatedAt.UTC(),
	}
	if !k.LastUsedAt.IsZero() {
		t := k.LastUsedAt.UTC()
		v.LastUsedAt = &t
	}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt.UTC()
		v.RevokedAt = &t
	}
	return v
}

// keysResponse is the body of GET /keys.
type keysResponse struct {
	UserID string    `json:"user_id"`
	Keys   []keyView `json:"keys"`
	// RevealPending is true when the billing webhook issued a key that
	// POST /keys/reveal will show once.
	RevealPending bool `json:"reveal_pending"`
}

// list answers GET /keys: the user's keys, newest first.
func (d *dashboard) list(w http.ResponseWriter, r *http.Request, user string) {
	keys, err := d.keys.ListByUser(r.Context(), user)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	pending, err := d.reveal.Pending(r.Context(), user)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	resp := keysResponse{UserID: user, Keys: make([]keyView, 0, len(keys)), RevealPending: pending}
	usage := make(map[string]quota.Usage, len(keys)) // by quota: rotated keys share one
	for _, k := range keys {
		u, ok := usage[k.QuotaID]
		if !ok {
			if u, err = d.gate.Usage(r.Context(), k.QuotaID); err != nil && !errors.Is(err, quota.ErrNotFound) {
				d.fail(w, r, err)
				return
			}
			usage[k.QuotaID] = u
		}
		resp.Keys = append(resp.Keys, viewOf(k, u, d.cycle))
	}
	writeJSON(w, http.StatusOK, resp)
}

// newKeyResponse carries a raw key, the one time it is shown.
type newKeyResponse struct {
	Key              string `json:"key"`
	ID               string `json:"id"`
	Masked           string `json:"masked"`
	Plan             string `json:"plan"`
	MonthlyCallLimit int64  `json:"monthly_call_limit"`
}

// rotate answers POST /keys/rotate: the active key is revoked and a new one on the
// same plan, spending the same quota, replaces it in one step; the raw key is
// answered once.
func (d *dashboard) rotate(w http.ResponseWriter, r *http.Request, user string) {
	raw, next, err := d.gate.Rotate(r.Context(), user, 0)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	u, err := d.gate.Usage(r.Context(), next.QuotaID)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newKeyResponse{
		Key: raw, ID: next.ID, Masked: next.Masked(), Plan: next.Plan, MonthlyCallLimit: u.Limit,
	})
}

// revealKey answers POST /keys/reveal: the key the billing webhook issued, once;
// later calls get 404.
func (d *dashboard) revealKey(w http.ResponseWriter, r *http.Request, user string) {
	raw, err := d.reveal.Reveal(r.Context(), user)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	resp := newKeyResponse{Key: raw, Masked: apikey.Mask(raw[max(len(raw)-4, 0):])}
	if k, err := d.keys.ByHash(r.Context(), apikey.Hash(raw)); err == nil {
		resp.ID, resp.Plan = k.ID, k.Plan
		if u, err := d.gate.Usage(r.Context(), k.QuotaID); err == nil {
			resp.MonthlyCallLimit = u.Limit
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeJSON answers v as JSON. Dashboard answers are never cached: some hold a
// raw key.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		tollgate.WriteError(w, nil, errInternal)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
