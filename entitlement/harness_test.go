package entitlement_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	apisql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/entitlement/sqlstore"
	"github.com/releaseradar/tollgate/internal/testenv"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// The tests' plans: a free plan without a quota and two paid ones. The fixture's
// price buys gold.
const (
	planFree      = "free"
	planGold      = "gold"
	planPlatinum  = "platinum"
	goldLimit     = 1_000
	platinumLimit = 5_000

	priceGold     = "price_1PgafmB7WZ01zgkW6dKueIc5"
	pricePlatinum = "price_platinum_monthly"
	priceUnknown  = "price_not_configured"
)

// testCatalog returns the tests' plan catalog.
func testCatalog() entitlement.Catalog {
	return entitlement.Catalog{
		planFree:     {Name: planFree, Rank: 0, Rate: "10-M"},
		planGold:     {Name: planGold, Rank: 1, MonthlyCallLimit: goldLimit, Rate: "100-M", Prices: []string{priceGold}},
		planPlatinum: {Name: planPlatinum, Rank: 2, MonthlyCallLimit: platinumLimit, Rate: "500-M", Prices: []string{pricePlatinum}},
	}
}

// backend is a store the sequences run on, with the key store its KeyIssuer
// writes to: on SQL, an apikey/sqlstore on the same database, which joins the
// entitlement store's transactions.
type backend struct {
	name string
	open func(t testing.TB) (entitlement.Store, apikey.Store, *sqlx.DB)
}

func openSQL(t testing.TB, db *sqlx.DB) (entitlement.Store, apikey.Store, *sqlx.DB) {
	t.Helper()
	s := sqlstore.New(db)
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	keys := apisql.New(db, apisql.Config{})
	if err := keys.Bootstrap(context.Background()); err != nil {
		t.Fatalf("apikey Bootstrap: %v", err)
	}
	return s, keys, db
}

func openMem(testing.TB) (entitlement.Store, apikey.Store, *sqlx.DB) {
	return memstore.New(), apimem.New(), nil
}

var backends = []backend{
	{"memstore", openMem},
	{"sqlite", func(t testing.TB) (entitlement.Store, apikey.Store, *sqlx.DB) { return openSQL(t, testenv.SQLite(t)) }},
	{"postgres", func(t testing.TB) (entitlement.Store, apikey.Store, *sqlx.DB) { return openSQL(t, testenv.Postgres(t)) }},
}

// eachBackend runs f once per store backend, in parallel subtests.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// harness is a Service behind an httptest server, with a Stripe-like event
// factory.
type harness struct {
	t      testing.TB
	svc    *entitlement.Service
	store  entitlement.Store
	issuer *keystest.Issuer
	db     *sqlx.DB // nil for memstore
	srv    *httptest.Server
	secret string
	logs   *testenv.Buffer

	mu       sync.Mutex
	n        int
	observed map[string]int // "type outcome" → count
	created  int64          // Stripe's clock for the next event
}

func randomSecret(t testing.TB) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("whsec_test_%x", b)
}

func sealKey() []byte {
	k := make([]byte, entitlement.SealKeySize)
	_, _ = rand.Read(k)
	return k
}

// newHarness starts a Service on b's store; edit may change the config.
func newHarness(t testing.TB, b backend, edit func(*entitlement.Config)) *harness {
	t.Helper()
	store, keys, db := b.open(t)
	h := &harness{
		t: t, store: store, issuer: keystest.New(keys), db: db, secret: randomSecret(t), logs: &testenv.Buffer{},
		observed: map[string]int{}, created: time.Now().Add(-time.Hour).Unix(),
	}
	cfg := entitlement.Config{
		Catalog:       testCatalog(),
		Keys:          h.issuer,
		WebhookSecret: h.secret,
		SealKey:       sealKey(),
		Logger:        slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observe: func(eventType, outcome string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.observed[eventType+" "+outcome]++
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := entitlement.New(store, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.svc = svc
	h.srv = httptest.NewServer(svc)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) observedCount(eventType, outcome string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.observed[eventType+" "+outcome]
}

// fixture returns a deep copy of the named object of testdata/stripe-objects.json.
func fixture(t testing.TB, name string) map[string]any {
	t.Helper()
	fixtureOnce.Do(func() {
		var data []byte
		if data, fixtureErr = os.ReadFile("testdata/stripe-objects.json"); fixtureErr == nil {
			fixtureErr = json.Unmarshal(data, &fixtureObjects)
		}
	})
	if fixtureErr != nil {
		t.Fatalf("fixture: %v", fixtureErr)
	}
	raw, ok := fixtureObjects[name]
	if !ok {
		t.Fatalf("fixture has no %q", name)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return obj
}

var (
	fixtureOnce    sync.Once
	fixtureObjects map[string]json.RawMessage // read once; each object decoded afresh
	fixtureErr     error
)

// period is a subscription's billing period, in unix seconds.
type period struct{ start, end int64 }

var month = period{start: 1_790_000_000, end: 1_790_000_000 + 30*86400}

// subscription shapes the fixture's subscription as API version 2023-10-16 sends
// it: the billing period on the subscription (later versions moved it onto the
// items), one item on price.
func subscription(t testing.TB, id, customer, status, price string, p period) map[string]any {
	sub := fixture(t, "subscription")
	for _, newer := range []string{"billing_mode", "billing_schedules", "managed_payments", "customer_account", "billing_cycle_anchor_config"} {
		delete(sub, newer)
	}
	sub["id"], sub["customer"], sub["status"] = id, customer, status
	sub["current_period_start"], sub["current_period_end"] = p.start, p.end
	sub["cancel_at_period_end"], sub["cancel_at"], sub["canceled_at"], sub["ended_at"] = false, nil, nil, nil
	sub["trial_start"], sub["trial_end"], sub["pause_collection"], sub["pending_update"] = nil, nil, nil, nil
	sub["metadata"] = map[string]any{}
	items := sub["items"].(map[string]any)
	item := items["data"].([]any)[0].(map[string]any)
	delete(item, "current_period_start")
	delete(item, "current_period_end")
	item["id"], item["subscription"] = "si_"+id, id
	item["price"].(map[string]any)["id"] = price
	item["plan"].(map[string]any)["id"] = price
	items["url"] = "/v1/subscription_items?subscription=" + id
	return sub
}

// cancelAtPeriodEnd marks sub as canceling at the end of its period, as the
// customer portal's "cancel" does.
func cancelAtPeriodEnd(sub map[string]any) map[string]any {
	sub["cancel_at_period_end"], sub["cancel_at"] = true, sub["current_period_end"]
	return sub
}

// invoice shapes the fixture's invoice as API version 2023-10-16 sends it: the
// subscription named at the top level and on its line (later versions moved it
// under parent).
func invoice(t testing.TB, id, customer, sub, price string, paid bool, created int64) map[string]any {
	in := fixture(t, "invoice")
	delete(in, "parent")
	delete(in, "customer_account")
	in["id"], in["customer"], in["subscription"], in["created"] = id, customer, sub, created
	in["billing_reason"] = "subscription_cycle"
	in["paid"] = paid
	if paid {
		in["status"], in["amount_paid"], in["amount_remaining"], in["attempted"], in["attempt_count"] = "paid", 1000, 0, true, 1
	} else {
		in["status"], in["amount_paid"], in["amount_remaining"], in["attempted"], in["attempt_count"] = "open", 0, 1000, true, 1
	}
	line := in["lines"].(map[string]any)["data"].([]any)[0].(map[string]any)
	delete(line, "parent")
	delete(line, "pricing")
	line["invoice"], line["subscription"], line["type"] = id, sub, "subscription"
	pr := fixture(t, "price")
	pr["id"] = price
	line["price"] = pr
	in["lines"].(map[string]any)["url"] = "/v1/invoices/" + id + "/lines"
	return in
}

// checkout shapes the fixture's checkout session as a completed subscription
// checkout for user.
func checkout(t testing.TB, customer, sub, user, paymentStatus string) map[string]any {
	cs := fixture(t, "checkout.session")
	delete(cs, "customer_account")
	cs["mode"], cs["status"], cs["payment_status"] = "subscription", "complete", paymentStatus
	cs["customer"], cs["subscription"], cs["client_reference_id"] = customer, sub, user
	cs["payment_intent"] = nil
	return cs
}

// ev is one event to deliver.
type ev struct {
	id, typ    string
	obj        map[string]any
	created    int64 // 0: the harness clock, which then advances a minute
	apiVersion string
	livemode   bool
	account    string
}

// build returns the event's JSON, as Stripe would send it.
func (h *harness) build(e *ev) []byte {
	h.t.Helper()
	h.mu.Lock()
	h.n++
	if e.id == "" {
		e.id = fmt.Sprintf("evt_test_%04d", h.n)
	}
	if e.created == 0 {
		h.created += 60
		e.created = h.created
	}
	h.mu.Unlock()
	env := fixture(h.t, "event")
	env["id"], env["type"], env["created"] = e.id, e.typ, e.created
	env["api_version"] = stripe.APIVersion
	if e.apiVersion != "" {
		env["api_version"] = e.apiVersion
	}
	env["livemode"] = e.livemode
	if e.account != "" {
		env["account"] = e.account
	}
	env["pending_webhooks"] = 1
	env["data"] = map[string]any{"object": e.obj}
	body, err := json.Marshal(env)
	if err != nil {
		h.t.Fatal(err)
	}
	return body
}

// sign returns a Stripe-Signature header for body, signed at ts with secret.
func sign(body []byte, secret string, ts time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: ts}).Header
}

// postRaw delivers body with the given signature header.
func (h *harness) postRaw(body []byte, sig string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			h.t.Errorf("status %d answered with Content-Type %q, want application/problem+json", resp.StatusCode, ct)
		}
		return resp.StatusCode, string(b)
	}
	var out struct{ Outcome string }
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatalf("2xx body %q: %v", b, err)
	}
	return resp.StatusCode, out.Outcome
}

// expect delivers e and checks its outcome.
func (h *harness) expect(want string, e ev) ev {
	h.t.Helper()
	body := h.build(&e)
	status, got := h.postRaw(body, sign(body, h.secret, time.Now()))
	if status != http.StatusOK || got != want {
		h.t.Fatalf("%s (%s): got %d %q, want 200 %q", e.typ, e.id, status, got, want)
	}
	return e
}

// keys returns the user's keys, newest first.
func (h *harness) keys(user string) []apikey.Key {
	h.t.Helper()
	keys, err := h.issuer.Keys().ListByUser(context.Background(), user)
	if err != nil {
		h.t.Fatal(err)
	}
	return keys
}

// want describes a user's keys at the end of a sequence.
type want struct {
	active int
	plan   string // of the active key
	limit  int64  // of the active key
	total  int    // keys ever issued: one per applied change, so duplicates show
}

func (h *harness) check(user string, w want) []apikey.Key {
	h.t.Helper()
	keys := h.keys(user)
	var active []apikey.Key
	for _, k := range keys {
		if k.Active() {
			active = append(active, k)
		}
	}
	if len(active) != w.active || len(keys) != w.total {
		h.t.Fatalf("user %s has %d active of %d keys, want %d active of %d: %s", user, len(active), len(keys), w.active, w.total, h.describe(keys))
	}
	if w.active == 1 {
		if limit, _ := h.issuer.Limit(active[0].ID); active[0].Plan != w.plan || limit != w.limit {
			h.t.Fatalf("user %s's active key: plan %s, limit %d; want %s, %d", user, active[0].Plan, limit, w.plan, w.limit)
		}
	}
	return keys
}

func (h *harness) describe(keys []apikey.Key) string {
	var parts []string
	for _, k := range keys {
		limit, _ := h.issuer.Limit(k.ID)
		parts = append(parts, fmt.Sprintf("%s/%s/%s/%d", k.ID, k.Plan, k.Status, limit))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// bindGold brings user to an active gold subscription the usual way: Stripe's
// customer.subscription.created, then checkout.session.completed.
func (h *harness) bindGold(user, customer, sub string) {
	h.t.Helper()
	h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(h.t, sub, customer, "active", priceGold, month)})
	h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(h.t, customer, sub, user, "paid")})
}
