package tollgate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	entmem "github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/internal/problem/problemtest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// dash is a dashboard on a fixture's gate whose signed-in user is the request's
// X-Test-User header.
type dash struct {
	*fixture
	d      *tollgate.Dashboard
	ledger *entmem.Store
	mux    *http.ServeMux
}

const testWebhookSecret = "whsec_dashboard_test"

func newDash(t *testing.T, billing func(f *fixture, ents *entmem.Store) *entitlement.Service) *dash {
	t.Helper()
	f := newFixture(t, tollgate.Config{})
	ents := entmem.New()
	cfg := tollgate.DashboardConfig{
		User: func(r *http.Request) (string, error) {
			switch u := r.Header.Get("X-Test-User"); u {
			case "":
				return "", errors.New("no session")
			case "store-down":
				return "", fmt.Errorf("%w: sessions: connection refused", tollgate.ErrUnavailable)
			default:
				return u, nil
			}
		},
		Ledger: ents,
	}
	if billing != nil {
		cfg.Billing = billing(f, ents)
	}
	d := &dash{fixture: f, d: f.gate.Dashboard(cfg), ledger: ents, mux: http.NewServeMux()}
	d.mux.Handle("GET /keys", d.d.Keys())
	d.mux.Handle("POST /keys/rotate", d.d.Rotate())
	d.mux.Handle("POST /keys/reveal", d.d.Reveal())
	d.mux.Handle("GET /keys/usage", d.d.Usage())
	d.mux.Handle("POST /billing/checkout", d.d.Checkout())
	d.mux.Handle("POST /billing/portal", d.d.Portal())
	return d
}

// do sends a request as user ("" for none); headers are name, value pairs.
func (d *dash) do(method, path, user, body string, headers ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	r.RemoteAddr = "192.0.2.50:1234"
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	d.mux.ServeHTTP(w, r)
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	return v
}

func TestDashboardKeys(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	old := d.issue(t, "gus", "gold", 0)
	if a := call(d.gate.Require("gold")(ok), old); a.status != 200 {
		t.Fatalf("call: %d", a.status)
	}
	start := d.clock.Now()
	d.clock.Add(time.Minute) // keys are listed newest first
	w := d.do("POST", "/keys/rotate", "gus", "")
	nk := decode[tollgate.NewKey](t, w)
	if !strings.HasPrefix(nk.Key, apikey.DefaultPrefix) || nk.Plan != "gold" || nk.MonthlyCallLimit != 1000 || nk.Masked != apikey.Mask(nk.Key[len(nk.Key)-4:]) {
		t.Fatalf("rotate: %+v", nk)
	}

	w = d.do("GET", "/keys", "gus", "")
	for _, secret := range []string{old, nk.Key, apikey.Hash(old), apikey.Hash(nk.Key)} {
		if strings.Contains(w.Body.String(), secret) {
			t.Fatalf("GET /keys shows a raw key or a hash: %s", w.Body)
		}
	}
	kl := decode[tollgate.KeyList](t, w)
	if kl.UserID != "gus" || len(kl.Keys) != 2 || kl.RevealPending {
		t.Fatalf("keys: %+v", kl)
	}
	next, prev := kl.Keys[0], kl.Keys[1]
	if next.ID != nk.ID || next.Status != "active" || next.RevokedAt != nil || next.LastUsedAt != nil {
		t.Errorf("the new key: %+v", next)
	}
	if next.BurstLimit != 4 || next.BurstWindowSeconds != 60 { // gold: 4-M
		t.Errorf("the new key's burst rate: %d a %d s", next.BurstLimit, next.BurstWindowSeconds)
	}
	if kl.Plans == nil || len(kl.Plans) != 0 {
		t.Errorf("plans for sale without billing: %#v, want none", kl.Plans)
	}
	if prev.Status != "revoked" || prev.RevokeReason != "rotated" || prev.RevokedAt == nil {
		t.Errorf("the rotated key: %+v", prev)
	}
	// Both spend one quota: the call the old key made shows on both.
	for _, k := range kl.Keys {
		if k.CallsUsed != 1 || k.MonthlyCallLimit != 1000 || !k.CycleStart.Equal(start) || !k.CycleResetsAt.Equal(start.Add(30*24*time.Hour)) {
			t.Errorf("key %s usage: %+v", k.ID, k)
		}
	}
	if kl := decode[tollgate.KeyList](t, d.do("GET", "/keys", "someone-else", "")); len(kl.Keys) != 0 || kl.UserID != "someone-else" {
		t.Errorf("another user sees %+v", kl)
	}
	problemtest.Check(t, d.do("POST", "/keys/rotate", "nobody", ""), 409, "No active key to rotate")
}

// A request without a signed-in user is 401 and spends its address's anonymous
// budget; a failed session store is 503 and spends nothing.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	for range 5 { // the anonymous plan "free" allows 5 a minute
		w := d.do("GET", "/keys", "", "")
		problemtest.Check(t, w, 401, "Missing dashboard token")
		if w.Header().Get("RateLimit-Policy") != `"free";q=5;w=60` {
			t.Fatalf("401 without the address budget's headers: %v", w.Header())
		}
	}
	w := d.do("GET", "/keys", "", "")
	problemtest.Check(t, w, 429, "Rate limit exceeded")
	if w.Header().Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	w = d.do("GET", "/keys", "store-down", "")
	problemtest.Check(t, w, 503, "Service temporarily unavailable")
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("503 Retry-After %q", w.Header().Get("Retry-After"))
	}
	// A signed-in request from the same address is served: only failed sign-ins
	// spend the budget.
	if w := d.do("GET", "/keys", "gus", ""); w.Code != 200 {
		t.Errorf("signed in: %d %s", w.Code, w.Body)
	}
}

func TestDashboardCrossOrigin(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	d.issue(t, "gus", "gold", 0)
	problemtest.Check(t, d.do("POST", "/keys/rotate", "gus", "", "Sec-Fetch-Site", "cross-site"), 403, "Cross-site request refused")
	problemtest.Check(t, d.do("POST", "/keys/rotate", "gus", "", "Origin", "https://evil.example"), 403, "Cross-site request refused")
	if w := d.do("GET", "/keys", "gus", "", "Sec-Fetch-Site", "cross-site"); w.Code != 200 {
		t.Errorf("a cross-site GET: %d", w.Code)
	}
	if w := d.do("POST", "/keys/rotate", "gus", "", "Sec-Fetch-Site", "same-origin"); w.Code != 200 {
		t.Errorf("a same-origin rotation: %d %s", w.Code, w.Body)
	}
}

func TestDashboardRotateBody(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	d.issue(t, "gus", "gold", 0)
	const graceRange = `Invalid body field "grace_seconds": must be an integer from 0 to 604800`
	for _, c := range []struct{ body, detail string }{
		{`{"grace_seconds":-1}`, graceRange},
		{`{"grace_seconds":604801}`, graceRange},
		{`{"grace_seconds":1.5}`, graceRange},
		{`{"grace_seconds":"3600"}`, graceRange},
		{`{"grace_seconds":1e3}`, graceRange},
		{`{"grace":3600}`, `Invalid request body: unknown field "grace"`},
		{`{`, `Invalid request body: must be a JSON object with the documented fields`},
		{`[3600]`, `Invalid request body: must be a JSON object with the documented fields`},
		{`{"grace_seconds":0} {}`, `Invalid request body: holds more than one JSON value`},
	} {
		w := d.do("POST", "/keys/rotate", "gus", c.body)
		problemtest.Check(t, w, 400, c.detail)
	}
	problemtest.Check(t, d.do("POST", "/keys/rotate", "gus", `{"grace_seconds":`+strings.Repeat(" ", tollgate.MaxDashboardBody)+`0}`), 413, "Request body too large")
	for _, body := range []string{"", "{}", `{"grace_seconds":null}`, `{"grace_seconds":0}`, `{"grace_seconds":3600}`, `{"grace_seconds":604800}`} {
		if w := d.do("POST", "/keys/rotate", "gus", body); w.Code != 200 {
			t.Errorf("rotate with %q: %d %s", body, w.Code, w.Body)
		}
	}
}

func TestDashboardUsage(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	ctx := context.Background()
	const day = 24 * time.Hour
	start := d.clock.Now() // 2026-05-01 12:00 UTC
	raw := d.issue(t, "gus", "gold", 0)
	k := keyOf(t, d.fixture, raw)
	d.clock.Set(start.Add(2*day + 3*time.Hour)) // 2026-05-03 15:00
	err := d.ledger.Record(ctx, "", []entitlement.UsageRecord{
		{KeyID: k.ID, UserID: "gus", Bucket: start.Add(-3 * day), Calls: 1000}, // before the cycle
		{KeyID: k.ID, UserID: "gus", Bucket: start.Add(time.Minute), Calls: 5},
		{KeyID: k.ID, UserID: "gus", Bucket: start.Add(11*time.Hour + 59*time.Minute), Calls: 2}, // 23:59 on day 1
		{KeyID: k.ID, UserID: "gus", Bucket: start.Add(2 * day), Calls: 7},
		{KeyID: "other", UserID: "someone-else", Bucket: start, Calls: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	// By default, the days of the current cycle so far.
	u := decode[tollgate.UsageView](t, d.do("GET", "/keys/usage", "gus", ""))
	want := []tollgate.UsageDay{{"2026-05-01", 7}, {"2026-05-02", 0}, {"2026-05-03", 7}}
	if fmt.Sprint(u.Days) != fmt.Sprint(want) || u.From != "2026-05-01" || u.To != "2026-05-03" || u.TotalCalls != 14 || u.UserID != "gus" {
		t.Fatalf("usage: %+v", u)
	}
	if u.MonthlyCallLimit != 1000 || u.CycleStart == nil || !u.CycleStart.Equal(start) || !u.CycleResetsAt.Equal(start.Add(30*day)) {
		t.Errorf("usage cycle: %+v", u)
	}
	u = decode[tollgate.UsageView](t, d.do("GET", "/keys/usage?days=5", "gus", ""))
	if len(u.Days) != 5 || u.From != "2026-04-29" || u.Days[0].Calls != 0 || u.Days[0].Date != "2026-04-29" || u.TotalCalls != 14 {
		t.Errorf("5 days: %+v", u)
	}
	u = decode[tollgate.UsageView](t, d.do("GET", "/keys/usage?days=90", "gus", ""))
	if len(u.Days) != 90 || u.TotalCalls != 1014 || u.To != "2026-05-03" {
		t.Errorf("90 days: %d days, total %d, to %s", len(u.Days), u.TotalCalls, u.To)
	}
	for _, q := range []string{"0", "91", "abc", "", "1.5"} {
		problemtest.Check(t, d.do("GET", "/keys/usage?days="+q, "gus", ""), 400, `Invalid parameter "days": must be an integer from 1 to 90`)
	}
	// A user without a key that works: a cycle's days, no cycle.
	u = decode[tollgate.UsageView](t, d.do("GET", "/keys/usage", "nobody", ""))
	if len(u.Days) != 30 || u.MonthlyCallLimit != 0 || u.CycleStart != nil || u.CycleResetsAt != nil || u.TotalCalls != 0 {
		t.Errorf("no key: %+v", u)
	}
	// Without a ledger: 503.
	noLedger := d.gate.Dashboard(tollgate.DashboardConfig{User: func(*http.Request) (string, error) { return "gus", nil }})
	w := httptest.NewRecorder()
	noLedger.Usage().ServeHTTP(w, httptest.NewRequest("GET", "/keys/usage", nil))
	problemtest.Check(t, w, 503, "Service temporarily unavailable")
}

// The calls the gate serves reach the usage view through the ledger it writes.
func TestDashboardUsageFromGate(t *testing.T) {
	t.Parallel()
	ents := entmem.New()
	f := newFixture(t, tollgate.Config{Ledger: ents})
	raw := f.issue(t, "gus", "gold", 0)
	h := f.gate.Require("gold")(ok)
	for range 3 {
		if a := call(h, raw); a.status != 200 {
			t.Fatalf("call: %d", a.status)
		}
	}
	if err := f.gate.Close(context.Background()); err != nil { // writes the ledger
		t.Fatal(err)
	}
	d := f.gate.Dashboard(tollgate.DashboardConfig{User: func(*http.Request) (string, error) { return "gus", nil }, Ledger: ents})
	w := httptest.NewRecorder()
	d.Usage().ServeHTTP(w, httptest.NewRequest("GET", "/keys/usage?days=1", nil))
	if u := decode[tollgate.UsageView](t, w); u.TotalCalls != 3 || u.CallsUsed != 3 || u.Days[0].Calls != 3 {
		t.Fatalf("usage after 3 calls: %+v", u)
	}
}

// GET /keys lists what Checkout sells, with the limits of each plan.
func TestDashboardPlansForSale(t *testing.T) {
	t.Parallel()
	d := newDash(t, billingOn(t, ""))
	kl := decode[tollgate.KeyList](t, d.do("GET", "/keys", "gus", ""))
	want := []tollgate.PlanView{{Name: "gold", MonthlyCallLimit: 1000, BurstLimit: 4, BurstWindowSeconds: 60}}
	if !slices.Equal(kl.Plans, want) {
		t.Fatalf("plans %+v, want %+v", kl.Plans, want)
	}
}

func TestDashboardWithoutBilling(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	problemtest.Check(t, d.do("POST", "/keys/reveal", "gus", ""), 404, "No key waiting to be revealed")
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":"gold"}`), 503, "Billing is not configured on this server")
	problemtest.Check(t, d.do("POST", "/billing/portal", "gus", ""), 503, "Billing is not configured on this server")
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":"gold","quantity":2}`), 400, `Invalid request body: unknown field "quantity"`)
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{}`), 400, `Invalid body field "plan": is required`)
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":7}`), 400, `Invalid body field "plan": must be a string`)
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", ``), 400, `Invalid request body: a JSON object is required`)
}

// billingOn returns a billing Service on stripe-mock whose catalog sells gold.
func billingOn(t *testing.T, apiKey string) func(f *fixture, ents *entmem.Store) *entitlement.Service {
	return func(f *fixture, ents *entmem.Store) *entitlement.Service {
		t.Helper()
		cat := testPlans()
		gold := cat["gold"]
		gold.Prices = []string{"price_gold"}
		cat["gold"] = gold
		cfg := entitlement.Config{
			Catalog: cat, Keys: f.gate, WebhookSecret: testWebhookSecret, SealKey: bytes.Repeat([]byte{7}, entitlement.SealKeySize),
			Now: f.clock.Now,
		}
		if apiKey != "" {
			cfg.Billing = entitlement.BillingConfig{
				APIKey:     apiKey,
				Backend:    entitlement.NewStripeBackend(testenv.StripeMock(t), nil, nil),
				SuccessURL: "https://app.example.test/account?checkout=success",
				CancelURL:  "https://app.example.test/account?checkout=cancel",
				ReturnURL:  "https://app.example.test/account",
			}
		}
		svc, err := entitlement.New(ents, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
}

// event posts a signed Stripe event to svc and expects 200.
func event(t *testing.T, svc *entitlement.Service, id, typ string, object map[string]any) {
	t.Helper()
	obj, _ := json.Marshal(object)
	payload, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "created": time.Now().Unix(),
		"livemode": false, "type": typ, "data": map[string]any{"object": json.RawMessage(obj)},
	})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: testWebhookSecret, Timestamp: time.Now()})
	r := httptest.NewRequest("POST", "/billing/webhook", bytes.NewReader(payload))
	r.Header.Set("Stripe-Signature", signed.Header)
	w := httptest.NewRecorder()
	svc.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("webhook %s: %d %s", typ, w.Code, w.Body)
	}
}

// A key a checkout issued is revealed once.
func TestDashboardReveal(t *testing.T) {
	t.Parallel()
	var svc *entitlement.Service
	d := newDash(t, func(f *fixture, ents *entmem.Store) *entitlement.Service {
		svc = billingOn(t, "")(f, ents)
		return svc
	})
	event(t, svc, "evt_cs", "checkout.session.completed", map[string]any{
		"id": "cs_1", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": "gus", "customer": "cus_1", "subscription": "sub_1",
	})
	event(t, svc, "evt_sub", "customer.subscription.created", map[string]any{
		"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "created": time.Now().Unix(),
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_1", "object": "subscription_item", "price": map[string]any{"id": "price_gold", "object": "price"},
		}}},
	})
	if kl := decode[tollgate.KeyList](t, d.do("GET", "/keys", "gus", "")); !kl.RevealPending || len(kl.Keys) != 1 {
		t.Fatalf("after checkout: %+v", kl)
	}
	nk := decode[tollgate.NewKey](t, d.do("POST", "/keys/reveal", "gus", ""))
	k := keyOf(t, d.fixture, nk.Key)
	if nk.ID != k.ID || nk.Plan != "gold" || nk.MonthlyCallLimit != 1000 || nk.Masked != k.Masked() {
		t.Fatalf("reveal: %+v, key %+v", nk, k)
	}
	problemtest.Check(t, d.do("POST", "/keys/reveal", "gus", ""), 404, "No key waiting to be revealed")
	if kl := decode[tollgate.KeyList](t, d.do("GET", "/keys", "gus", "")); kl.RevealPending {
		t.Fatal("still pending after the reveal")
	}
	// Billing without an API key: checkout and portal are not configured.
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":"gold"}`), 503, "Billing is not configured on this server")
	problemtest.Check(t, d.do("POST", "/billing/portal", "gus", ""), 503, "Billing is not configured on this server")
}

// Checkout and Portal on stripe-mock.
func TestDashboardCheckoutPortal(t *testing.T) {
	t.Parallel()
	var svc *entitlement.Service
	var ents *entmem.Store
	d := newDash(t, func(f *fixture, e *entmem.Store) *entitlement.Service {
		ents = e
		svc = billingOn(t, "sk_test_dashboard")(f, e)
		return svc
	})
	u := decode[tollgate.RedirectURL](t, d.do("POST", "/billing/checkout", "gus", `{"plan":"gold"}`))
	if !strings.HasPrefix(u.URL, "https://") {
		t.Errorf("checkout URL %q", u.URL)
	}
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":"platinum"}`), 400, "Unknown plan")
	problemtest.Check(t, d.do("POST", "/billing/checkout", "gus", `{"plan":"free"}`), 400, "Unknown plan")
	problemtest.Check(t, d.do("POST", "/billing/portal", "gus", ""), 404, "No billing account for this user")
	err := ents.Update(context.Background(), func(ctx context.Context, tx entitlement.Tx) error {
		_, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_gus", UserID: "gus", BoundAt: d.clock.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if u := decode[tollgate.RedirectURL](t, d.do("POST", "/billing/portal", "gus", "")); !strings.HasPrefix(u.URL, "https://") {
		t.Errorf("portal URL %q", u.URL)
	}
	problemtest.Check(t, d.do("POST", "/billing/portal", "gus", "", "Sec-Fetch-Site", "cross-site"), 403, "Cross-site request refused")
}

// A rotation with a grace period shows the old key as expiring until its
// expires_at, and as revoked from then on.
func TestDashboardRotateGrace(t *testing.T) {
	t.Parallel()
	d := newDash(t, nil)
	d.clock.Set(time.Now().UTC().Truncate(time.Second)) // the key cache expires keys by the wall clock
	old := d.issue(t, "gus", "gold", 0)
	start := d.clock.Now()
	d.clock.Add(time.Minute)
	nk := decode[tollgate.NewKey](t, d.do("POST", "/keys/rotate", "gus", `{"grace_seconds":3600}`))
	h := d.gate.Require("gold")(ok)
	for _, raw := range []string{old, nk.Key} {
		if a := call(h, raw); a.status != 200 {
			t.Fatalf("during the grace: %d %q", a.status, a.detail)
		}
	}
	kl := decode[tollgate.KeyList](t, d.do("GET", "/keys", "gus", ""))
	if len(kl.Keys) != 2 {
		t.Fatalf("keys: %+v", kl)
	}
	next, prev := kl.Keys[0], kl.Keys[1]
	expires := start.Add(time.Minute + time.Hour)
	if next.Status != "active" || next.ExpiresAt != nil || prev.Status != "expiring" || prev.ExpiresAt == nil || !prev.ExpiresAt.Equal(expires) || prev.RevokedAt != nil {
		t.Fatalf("during the grace: new %+v, old %+v", next, prev)
	}
	if next.CallsUsed != 2 || prev.CallsUsed != 2 {
		t.Errorf("both keys spend one quota: %d and %d calls used, want 2 and 2", next.CallsUsed, prev.CallsUsed)
	}
	d.clock.Set(expires)
	kl = decode[tollgate.KeyList](t, d.do("GET", "/keys", "gus", ""))
	if prev := kl.Keys[1]; prev.Status != "revoked" || prev.RevokedAt == nil || !prev.RevokedAt.Equal(expires) || !prev.ExpiresAt.Equal(expires) {
		t.Fatalf("after the grace: old %+v", prev)
	}
	if u := decode[tollgate.UsageView](t, d.do("GET", "/keys/usage", "gus", "")); u.MonthlyCallLimit != 1000 || !u.CycleStart.Equal(start) {
		t.Errorf("usage after the grace: %+v", u)
	}
}
