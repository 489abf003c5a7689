package tollgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/quota"
)

// Errors of the dashboard handlers. Like every other error, each is answered from
// tollgate's one table of problems (WriteError).
var (
	// ErrNotSignedIn: DashboardConfig.User found no signed-in user and returned an
	// error outside the table, or returned an empty user ID (401 "Missing
	// dashboard token").
	ErrNotSignedIn = problem.New(problem.NoSession, "tollgate: dashboard: no signed-in user")
	// ErrCrossOrigin: a browser sent an unsafe dashboard request from another
	// origin (403), refused by the default DashboardConfig.Protect.
	ErrCrossOrigin = problem.New(problem.CrossOrigin, "tollgate: dashboard: cross-origin request refused")
	// ErrBodyTooLarge: a dashboard request body over MaxDashboardBody (413).
	ErrBodyTooLarge = problem.New(problem.BodyTooLarge, "tollgate: dashboard: request body too large")
	// ErrInvalidRequest is matched (errors.Is) by every refusal of a dashboard
	// request's parameters or body (400); the detail names the parameter or field.
	ErrInvalidRequest = problem.New(problem.Invalid, "tollgate: dashboard: invalid request")
	// ErrNoLedger: the usage view was asked for, but DashboardConfig.Ledger is nil
	// (503).
	ErrNoLedger = problem.New(problem.Unavailable, "tollgate: dashboard: no usage ledger configured")
)

// Dashboard limits.
const (
	// MaxDashboardBody is the largest request body a dashboard handler reads.
	MaxDashboardBody = 4 << 10
	// MaxUsageDays is how many days the usage view covers at most (days).
	MaxUsageDays = 90
)

// DashboardConfig configures the dashboard handlers of a gate. User is required.
type DashboardConfig struct {
	// User returns the signed-in user of r: the host application's own session or
	// auth. An error is answered through OnError: one that wraps an error of
	// tollgate's table keeps its answer (a session package's 401 with its own
	// detail; ErrUnavailable, wrapped, for a session store that failed: 503), any
	// other is ErrNotSignedIn (401). A request answered 401 spends its client
	// address's budget of the anonymous plan first, as a missing or unknown API key
	// does, so guessed sessions are limited like guessed keys.
	User func(r *http.Request) (userID string, err error)
	// Billing is the entitlement Service that reveals webhook-issued keys, starts
	// Checkout and opens the Customer Portal. nil: Reveal answers
	// entitlement.ErrNothingToReveal (404), Checkout and Portal
	// entitlement.ErrBillingNotConfigured (503), and GET /keys never reports a key
	// pending.
	Billing *entitlement.Service
	// Ledger holds the calls served per key and minute (the gate's Config.Ledger).
	// nil: Usage answers ErrNoLedger (503).
	Ledger entitlement.Ledger
	// Now is the clock of the usage view's days; nil means the gate's clock.
	Now func() time.Time
	// OnError answers every refusal and failure; nil means WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Protect guards the handlers against cross-site request forgery: it must
	// refuse unsafe requests (POST) that a browser sent from another site. nil
	// means http.CrossOriginProtection with its defaults, whose refusals are
	// ErrCrossOrigin through OnError.
	Protect func(http.Handler) http.Handler
}

// Dashboard serves a signed-in user's side of the gate: their keys, rotation,
// the key a checkout issued, usage per day, and the way to Stripe's Checkout and
// Customer Portal. Every handler works on the user DashboardConfig.User names and
// takes no user or key ID from the request. Answers are JSON and never cached
// (Cache-Control: no-store: some hold a raw key); refusals are problem documents.
// Mount the handlers on the routes and methods of your choice; the routes named
// below are the reference server's.
type Dashboard struct {
	g       *Gate
	user    func(r *http.Request) (string, error)
	billing *entitlement.Service
	ledger  entitlement.Ledger
	plans   []PlanView // for sale, by rank
	now     func() time.Time
	onError func(w http.ResponseWriter, r *http.Request, err error)
	protect func(http.Handler) http.Handler
}

// Dashboard returns the dashboard handlers of the gate's keys. It panics when
// cfg.User is nil: a dashboard that knows no user could serve nobody, a wiring
// error.
func (g *Gate) Dashboard(cfg DashboardConfig) *Dashboard {
	if cfg.User == nil {
		panic("tollgate: DashboardConfig.User is required")
	}
	d := &Dashboard{
		g: g, user: cfg.User, billing: cfg.Billing, ledger: cfg.Ledger,
		now: cfg.Now, onError: cfg.OnError, protect: cfg.Protect,
	}
	if d.now == nil {
		d.now = g.now
	}
	if d.onError == nil {
		d.onError = WriteError
	}
	d.plans = []PlanView{}
	if d.billing != nil {
		for _, p := range d.billing.ForSale() {
			v := PlanView{Name: p.Name, MonthlyCallLimit: p.MonthlyCallLimit}
			v.BurstLimit, v.BurstWindowSeconds = g.plans[p.Name].burst()
			d.plans = append(d.plans, v)
		}
	}
	if d.protect == nil {
		cop := http.NewCrossOriginProtection()
		cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.onError(w, r, ErrCrossOrigin)
		}))
		d.protect = cop.Handler
	}
	return d
}

// userHandler serves one request of a signed-in user.
type userHandler func(w http.ResponseWriter, r *http.Request, userID string)

// handler protects h (DashboardConfig.Protect) and calls it with the signed-in
// user.
func (d *Dashboard) handler(h userHandler) http.Handler {
	return d.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		user, err := d.user(r)
		if err == nil && user == "" {
			err = ErrNotSignedIn
		}
		if err != nil {
			var known *problem.Error
			if !errors.As(err, &known) {
				err = fmt.Errorf("%w: %w", ErrNotSignedIn, err)
			}
			if status, _, _ := problem.For(err); status == http.StatusUnauthorized && !d.g.allowAddr(w, r) {
				return // answered 429: the address guessed too often
			}
			d.onError(w, r, err)
			return
		}
		h(w, r, user)
	}))
}

// KeyView is a key as the dashboard shows it: masked, without its hash, with the
// usage of the quota it spends.
type KeyView struct {
	ID     string `json:"id"`
	Masked string `json:"masked"`
	Plan   string `json:"plan"`
	// Status is "active", "expiring" (replaced by a rotation with a grace period,
	// working until ExpiresAt) or "revoked".
	Status           string     `json:"status"`
	MonthlyCallLimit int64      `json:"monthly_call_limit"`
	CallsUsed        int64      `json:"calls_used"`
	CycleStart       time.Time  `json:"cycle_start"`
	CycleResetsAt    time.Time  `json:"cycle_resets_at"`
	CreatedAt        time.Time  `json:"created_at"`
	LastUsedAt       *time.Time `json:"last_used_at"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	// RevokeReason is what the revocation recorded ("rotated", "admin revoke",
	// "billing: cancelled", "billing: payment failed", …).
	RevokeReason string     `json:"revoke_reason,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	// BurstLimit calls per BurstWindowSeconds is the burst rate of the key's plan;
	// both are absent for a plan without one.
	BurstLimit         int64 `json:"burst_limit,omitempty"`
	BurstWindowSeconds int64 `json:"burst_window_seconds,omitempty"`
}

// PlanView is a plan for sale, with the limits the catalog and the gate give it.
type PlanView struct {
	Name               string `json:"name"`
	MonthlyCallLimit   int64  `json:"monthly_call_limit"`
	BurstLimit         int64  `json:"burst_limit,omitempty"`
	BurstWindowSeconds int64  `json:"burst_window_seconds,omitempty"`
}

// KeyList is the body of Keys.
type KeyList struct {
	UserID string    `json:"user_id"`
	Keys   []KeyView `json:"keys"` // newest first
	// RevealPending is true when a key the billing webhook issued waits for
	// Reveal.
	RevealPending bool `json:"reveal_pending"`
	// Plans are the plans Checkout sells (entitlement.Service.ForSale), lowest
	// rank first; empty without DashboardConfig.Billing.
	Plans []PlanView `json:"plans"`
}

// NewKey carries a raw key, the one time it is shown.
type NewKey struct {
	Key              string `json:"key"`
	ID               string `json:"id"`
	Masked           string `json:"masked"`
	Plan             string `json:"plan"`
	MonthlyCallLimit int64  `json:"monthly_call_limit"`
}

// UsageDay is the calls a user's keys served on one UTC day.
type UsageDay struct {
	Date  string `json:"date"` // 2026-05-01
	Calls int64  `json:"calls"`
}

// UsageView is the body of Usage.
type UsageView struct {
	UserID     string     `json:"user_id"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Days       []UsageDay `json:"days"` // every day from From to To, oldest first
	TotalCalls int64      `json:"total_calls"`
	// The current cycle of the quota the user's working key spends; zero and null
	// when no key works.
	MonthlyCallLimit int64      `json:"monthly_call_limit"`
	CallsUsed        int64      `json:"calls_used"`
	CycleStart       *time.Time `json:"cycle_start"`
	CycleResetsAt    *time.Time `json:"cycle_resets_at"`
}

// RedirectURL is the body of Checkout and Portal: where to send the browser.
type RedirectURL struct {
	URL string `json:"url"`
}

// works reports whether k authenticates at now.
func works(k apikey.Key, now time.Time) bool { return k.Active() && !k.Expired(now) }

// viewOf shows k with the usage of its quota at now.
func (d *Dashboard) viewOf(k apikey.Key, u quota.Usage, now time.Time) KeyView {
	v := KeyView{
		ID: k.ID, Masked: k.Masked(), Plan: k.Plan, Status: string(k.StatusAt(now)),
		MonthlyCallLimit: u.Limit, CallsUsed: u.Used,
		CycleStart:    u.CycleStart.UTC(),
		CycleResetsAt: quota.CycleEnd(u.CycleStart, d.g.cycle).UTC(),
		CreatedAt:     k.CreatedAt.UTC(),
		LastUsedAt:    timePtr(k.LastUsedAt),
		RevokedAt:     timePtr(k.RevokedAt),
		RevokeReason:  k.RevokeReason,
	}
	if pl := d.g.plans[k.Plan]; pl != nil {
		v.BurstLimit, v.BurstWindowSeconds = pl.burst()
	}
	if k.Expiring() {
		// Replaced with a grace period: working until ExpiresAt, refused from then
		// on (when it shows as revoked at ExpiresAt).
		v.ExpiresAt = timePtr(k.ExpiresAt)
		if k.Expired(now) {
			v.RevokedAt = v.ExpiresAt
		}
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Keys serves GET /keys: the user's keys, newest first, masked (KeyList). Keys
// that a rotation replaced show the usage of the quota they share with the key
// that replaced them.
func (d *Dashboard) Keys() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		ctx := r.Context()
		keys, err := d.g.keys.ListByUser(ctx, user)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		resp := KeyList{UserID: user, Keys: make([]KeyView, 0, len(keys)), Plans: d.plans}
		if d.billing != nil {
			if resp.RevealPending, err = d.billing.Pending(ctx, user); err != nil {
				d.onError(w, r, err)
				return
			}
		}
		now := d.g.now()
		usage := make(map[string]quota.Usage, len(keys)) // by quota: rotated keys share one
		for _, k := range keys {
			u, ok := usage[k.QuotaID]
			if !ok {
				if u, err = d.g.Usage(ctx, k.QuotaID); err != nil && !errors.Is(err, quota.ErrNotFound) {
					d.onError(w, r, err)
					return
				}
				usage[k.QuotaID] = u
			}
			resp.Keys = append(resp.Keys, d.viewOf(k, u, now))
		}
		writeJSON(w, resp)
	})
}

// Rotate serves POST /keys/rotate: the user's active key is replaced by a new one
// on the same plan that spends the same quota (Gate.Rotate), and the raw key is
// answered once (NewKey). An optional JSON body {"grace_seconds": N} keeps the old
// key working for N seconds, 0 to 604800 (MaxGrace; ErrBadGrace otherwise);
// apikey.ErrNoActiveKey (409) when the user has no active key that is not
// expiring.
func (d *Dashboard) Rotate() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		var body struct {
			GraceSeconds *json.RawMessage `json:"grace_seconds"`
		}
		if err := readBody(w, r, &body, false); err != nil {
			d.onError(w, r, err)
			return
		}
		var grace time.Duration
		if body.GraceSeconds != nil {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(*body.GraceSeconds)), 10, 64)
			switch {
			case string(*body.GraceSeconds) == "null":
			case err != nil || n < 0 || n > int64(MaxGrace/time.Second):
				d.onError(w, r, ErrBadGrace) // its detail names grace_seconds
				return
			default:
				grace = time.Duration(n) * time.Second
			}
		}
		raw, next, err := d.g.Rotate(r.Context(), user, grace)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		u, err := d.g.Usage(r.Context(), next.QuotaID)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		writeJSON(w, NewKey{Key: raw, ID: next.ID, Masked: next.Masked(), Plan: next.Plan, MonthlyCallLimit: u.Limit})
	})
}

// Reveal serves POST /keys/reveal: the key the billing webhook issued to the user,
// exactly once (NewKey); entitlement.ErrNothingToReveal (404) afterwards, or when
// none waits.
func (d *Dashboard) Reveal() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		if d.billing == nil {
			d.onError(w, r, entitlement.ErrNothingToReveal)
			return
		}
		raw, err := d.billing.Reveal(r.Context(), user)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		// The key is revealed and gone from the store: whatever fails from here on
		// must not lose it, so the rest of the answer is best effort.
		resp := NewKey{Key: raw, Masked: apikey.Mask(raw[max(len(raw)-4, 0):])}
		if k, err := d.g.keys.ByHash(r.Context(), apikey.Hash(raw)); err == nil {
			resp.ID, resp.Plan, resp.Masked = k.ID, k.Plan, k.Masked()
			if u, err := d.g.Usage(r.Context(), k.QuotaID); err == nil {
				resp.MonthlyCallLimit = u.Limit
			}
		}
		writeJSON(w, resp)
	})
}

// Usage serves GET /keys/usage?days=N: the calls the user's keys served per UTC
// day, oldest first, for the N days up to today (1 to MaxUsageDays; without N, the
// days of the current cycle so far), from DashboardConfig.Ledger, with the current
// cycle's limit, use and reset (UsageView).
func (d *Dashboard) Usage() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		if d.ledger == nil {
			d.onError(w, r, ErrNoLedger)
			return
		}
		days := 0
		if q := r.URL.Query(); q.Has("days") {
			n, err := strconv.Atoi(q.Get("days"))
			if err != nil || n < 1 || n > MaxUsageDays {
				d.onError(w, r, &inputError{where: "parameter", name: "days", reason: fmt.Sprintf("must be an integer from 1 to %d", MaxUsageDays)})
				return
			}
			days = n
		}
		ctx := r.Context()
		keys, err := d.g.keys.ListByUser(ctx, user)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		resp := UsageView{UserID: user}
		var u quota.Usage
		if k, ok := workingKey(keys, d.g.now()); ok {
			if u, err = d.g.Usage(ctx, k.QuotaID); err != nil && !errors.Is(err, quota.ErrNotFound) {
				d.onError(w, r, err)
				return
			}
			if err == nil {
				resp.MonthlyCallLimit, resp.CallsUsed = u.Limit, u.Used
				resp.CycleStart = timePtr(u.CycleStart)
				resp.CycleResetsAt = timePtr(quota.CycleEnd(u.CycleStart, d.g.cycle))
			}
		}
		today := day(d.now())
		if days == 0 {
			days = int(d.g.cycle.Hours() / 24) // no working key: a cycle's worth
			if resp.CycleStart != nil {
				days = int(today.Sub(day(*resp.CycleStart)).Hours()/24) + 1
			}
			days = min(max(days, 1), MaxUsageDays)
		}
		from := today.AddDate(0, 0, 1-days)
		daily, err := d.ledger.Daily(ctx, user, from, today.AddDate(0, 0, 1))
		if err != nil {
			d.onError(w, r, err)
			return
		}
		resp.Days = make([]UsageDay, days)
		for i := range resp.Days {
			resp.Days[i].Date = from.AddDate(0, 0, i).Format(time.DateOnly)
		}
		for _, du := range daily {
			if i := int(day(du.Day).Sub(from).Hours() / 24); i >= 0 && i < days {
				resp.Days[i].Calls += du.Calls
				resp.TotalCalls += du.Calls
			}
		}
		resp.From, resp.To = resp.Days[0].Date, resp.Days[days-1].Date
		writeJSON(w, resp)
	})
}

// day returns the start of t's UTC day.
func day(t time.Time) time.Time {
	y, m, dd := t.UTC().Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
}

// workingKey returns the key whose quota is the user's current one: the newest
// key that works and does not expire, else the newest that works (keys come newest
// first).
func workingKey(keys []apikey.Key, now time.Time) (apikey.Key, bool) {
	var expiring *apikey.Key
	for i, k := range keys {
		if !works(k, now) {
			continue
		}
		if !k.Expiring() {
			return k, true
		}
		if expiring == nil {
			expiring = &keys[i]
		}
	}
	if expiring != nil {
		return *expiring, true
	}
	return apikey.Key{}, false
}

// Checkout serves POST /billing/checkout with the JSON body {"plan": NAME}: the URL
// of a Stripe Checkout session for the plan (entitlement.Service.Checkout) to send
// the browser to (RedirectURL). entitlement.ErrUnknownPlan (400) for a plan that
// cannot be bought; entitlement.ErrBillingNotConfigured (503) without billing.
func (d *Dashboard) Checkout() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		var body struct {
			Plan *json.RawMessage `json:"plan"`
		}
		if err := readBody(w, r, &body, true); err != nil {
			d.onError(w, r, err)
			return
		}
		if body.Plan == nil {
			d.onError(w, r, &inputError{where: "body field", name: "plan", reason: "is required"})
			return
		}
		var plan string
		if err := json.Unmarshal(*body.Plan, &plan); err != nil {
			d.onError(w, r, &inputError{where: "body field", name: "plan", reason: "must be a string"})
			return
		}
		if d.billing == nil {
			d.onError(w, r, entitlement.ErrBillingNotConfigured)
			return
		}
		url, err := d.billing.Checkout(r.Context(), user, plan)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		writeJSON(w, RedirectURL{URL: url})
	})
}

// Portal serves POST /billing/portal: the URL of a Stripe Customer Portal session
// for the user's customer (entitlement.Service.Portal; RedirectURL).
// entitlement.ErrNoCustomer (404) when the user has none;
// entitlement.ErrBillingNotConfigured (503) without billing.
func (d *Dashboard) Portal() http.Handler {
	return d.handler(func(w http.ResponseWriter, r *http.Request, user string) {
		if d.billing == nil {
			d.onError(w, r, entitlement.ErrBillingNotConfigured)
			return
		}
		url, err := d.billing.Portal(r.Context(), user)
		if err != nil {
			d.onError(w, r, err)
			return
		}
		writeJSON(w, RedirectURL{URL: url})
	})
}

// inputError is ErrInvalidRequest naming what was wrong.
type inputError struct {
	where  string // "parameter", "body field", or "" (name names the part)
	name   string
	reason string
}

func (e *inputError) Error() string { return "tollgate: dashboard: " + e.ProblemDetail() }

// ProblemDetail returns the client-facing sentence, such as
// `Invalid body field "grace_seconds": must be an integer from 0 to 604800`.
func (e *inputError) ProblemDetail() string {
	if e.where == "" {
		return "Invalid " + e.name + ": " + e.reason
	}
	return fmt.Sprintf("Invalid %s %q: %s", e.where, e.name, e.reason)
}

func (e *inputError) Unwrap() error { return ErrInvalidRequest }

// readBody decodes r's JSON object body into v, refusing unknown fields, a body
// over MaxDashboardBody and anything after the object. An empty body leaves v as
// it is unless required.
func readBody(w http.ResponseWriter, r *http.Request, v any, required bool) error {
	if r.Body == nil {
		r.Body = http.NoBody
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDashboardBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return ErrBodyTooLarge
	case err != nil:
		return fmt.Errorf("tollgate: dashboard: read the body: %w", err) // the client went away
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			return &inputError{name: "request body", reason: "a JSON object is required"}
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok && len(field) <= 66 {
			return &inputError{name: "request body", reason: "unknown field " + field}
		}
		return errNotObject
	}
	if dec.More() {
		return &inputError{name: "request body", reason: "holds more than one JSON value"}
	}
	return nil
}

var errNotObject = &inputError{name: "request body", reason: "must be a JSON object with the documented fields"}

// errEncode answers a dashboard answer that could not be encoded: a bug.
var errEncode = problem.New(problem.Internal, "tollgate: dashboard: encode the answer")

// writeJSON answers v as JSON with 200.
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.WriteError(w, errEncode)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}
