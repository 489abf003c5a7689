package main

// The billing loop of issue 13 end to end, on the real binary against stripe-mock
// (Stripe's API from Stripe's own OpenAPI description), on SQLite and PostgreSQL:
// sign in → checkout → signed webhooks → the key revealed once → calls → meter
// events with the right customer, values and identifiers, across two restarts
// (one with calls on both sides of it, one with a meter event in flight), and
// `admin usage` showing served = reported.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// stripeCall is one request the server made to Stripe.
type stripeCall struct {
	Method, Path   string
	Form           url.Values
	IdempotencyKey string
}

// meterEvent is a billing.meter_event the server sent.
type meterEvent struct {
	Identifier, EventName, Customer string
	Value, Timestamp                int64
}

// stripeProxy stands between the server (RR_STRIPE_API_BASE) and stripe-mock: it
// records every request and passes it on, and plays the part of Stripe's state
// that a stateless mock lacks: it answers reads of the subscriptions the test
// set, and it keeps the identifiers of the meter events accepted, refusing a
// second event with one of them as Stripe does ("An event already exists with
// identifier …"), so that what it accepted is what Stripe would bill. It can
// hold the answer to the next meter event (accepted, but the answer never
// arrives), to leave a sent event unmarked across a restart.
type stripeProxy struct {
	url  string
	mock *httputil.ReverseProxy

	mu       sync.Mutex
	calls    []stripeCall
	subs     map[string][]byte
	accepted map[string]meterEvent
	order    []string     // accepted identifiers, in order
	dups     []meterEvent // refused resends
	hold     bool
	held     chan meterEvent
}

func newStripeProxy(t *testing.T, mockURL string) *stripeProxy {
	t.Helper()
	target, err := url.Parse(mockURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &stripeProxy{
		mock:     httputil.NewSingleHostReverseProxy(target),
		subs:     map[string][]byte{},
		accepted: map[string]meterEvent{},
		held:     make(chan meterEvent, 1),
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *stripeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	p.mu.Lock()
	p.calls = append(p.calls, stripeCall{Method: r.Method, Path: r.URL.Path, Form: form, IdempotencyKey: r.Header.Get("Idempotency-Key")})
	sub, isSub := p.subs[strings.TrimPrefix(r.URL.Path, "/v1/subscriptions/")]
	p.mu.Unlock()

	switch {
	case r.Method == http.MethodGet && isSub:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_proxy")
		_, _ = w.Write(sub)
		return
	case r.Method == http.MethodPost && r.URL.Path == "/v1/billing/meter_events":
		p.meterEvent(w, r, form)
		return
	}
	p.mock.ServeHTTP(w, r)
}

func (p *stripeProxy) meterEvent(w http.ResponseWriter, r *http.Request, form url.Values) {
	ev := meterEvent{
		Identifier: form.Get("identifier"), EventName: form.Get("event_name"),
		Customer: form.Get("payload[stripe_customer_id]"),
	}
	ev.Value, _ = strconv.ParseInt(form.Get("payload[value]"), 10, 64)
	ev.Timestamp, _ = strconv.ParseInt(form.Get("timestamp"), 10, 64)
	p.mu.Lock()
	if _, dup := p.accepted[ev.Identifier]; dup {
		p.dups = append(p.dups, ev)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_proxy_dup")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"type":"invalid_request_error","message":"An event already exists with identifier %s."}}`, ev.Identifier)
		return
	}
	p.mu.Unlock()
	rec := httptest.NewRecorder()
	p.mock.ServeHTTP(rec, r) // stripe-mock checks the request against Stripe's API
	p.mu.Lock()
	hold := false
	if rec.Code == http.StatusOK {
		p.accepted[ev.Identifier] = ev
		p.order = append(p.order, ev.Identifier)
		hold, p.hold = p.hold, false
	}
	p.mu.Unlock()
	if hold {
		p.held <- ev
		<-r.Context().Done() // the answer never arrives: the server gives up (or stops)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// setSubscription makes reads of the subscription answer obj.
func (p *stripeProxy) setSubscription(id string, obj map[string]any) {
	b, _ := json.Marshal(obj)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subs[id] = b
}

func (p *stripeProxy) holdNextMeterEvent() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = true
}

func (p *stripeProxy) callsTo(method, path string) []stripeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []stripeCall
	for _, c := range p.calls {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// events returns the meter events accepted, in order, and the resends refused.
func (p *stripeProxy) events() (accepted, dups []meterEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range p.order {
		accepted = append(accepted, p.accepted[id])
	}
	return accepted, slices.Clone(p.dups)
}

// event returns the accepted meter event with that identifier.
func (p *stripeProxy) event(identifier string) (meterEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.accepted[identifier]
	return e, ok
}

func sumValues(evs []meterEvent) int64 {
	var n int64
	for _, e := range evs {
		n += e.Value
	}
	return n
}

func TestBillingEndToEnd(t *testing.T) {
	bin := binary(t)
	mock := testenv.StripeMock(t)
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := testenv.SQLitePath(t)
		billingE2E(t, bin, mock, "sqlite:"+path, func() *sqlx.DB { return testenv.OpenSQLite(t, path) })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pg := testenv.PostgresURL(t)
		billingE2E(t, bin, mock, pg, func() *sqlx.DB { return testenv.OpenPostgres(t, pg) })
	})
}

var meterIdentifier = regexp.MustCompile(`^tg_[0-9a-f]{32}$`)

func billingE2E(t *testing.T, bin, mockURL, databaseURL string, openDB func() *sqlx.DB) {
	const (
		user      = "billing-user"
		customer  = "cus_e2e_billing"
		subID     = "sub_e2e_billing"
		meterName = "releaseradar_api_calls"
		publicURL = "https://radar.example.test"
		n1, n2    = 7, 5 // calls before and after the first restart
	)
	proxy := newStripeProxy(t, mockURL)
	env := []string{
		"RR_DATABASE_URL=" + databaseURL,
		"RR_STRIPE_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"RR_STRIPE_PRICE_PRO=" + e2ePricePro,
		"RR_STRIPE_API_KEY=sk_test_4eC39HqLyjWDarjtT1zdp7dc",
		"RR_STRIPE_API_BASE=" + proxy.url,
		"RR_STRIPE_METER_EVENT=" + meterName,
		"RR_STRIPE_METER_INTERVAL=1s",
		"RR_STRIPE_METER_GRACE=1s",
		"RR_PUBLIC_URL=" + publicURL,
	}
	a := start(t, bin, env)
	token := a.adminCmd("token", "--user", user)
	auth := []string{"Authorization", "Bearer " + token, "Content-Type", "application/json"}

	// Checkout: a Stripe Checkout session for the plan's price, naming the user.
	r := a.do(http.MethodPost, a.base+"/billing/checkout", []byte(`{"plan":"pro"}`), auth...)
	var redirect struct{ URL string }
	if r.status != 200 || json.Unmarshal(r.body, &redirect) != nil || !strings.HasPrefix(redirect.URL, "https://") {
		t.Fatalf("checkout: %d %s\n%s", r.status, r.body, a.log)
	}
	sessions := proxy.callsTo(http.MethodPost, "/v1/checkout/sessions")
	if len(sessions) != 1 {
		t.Fatalf("%d checkout sessions created, want 1", len(sessions))
	}
	f := sessions[0].Form
	if f.Get("mode") != "subscription" || f.Get("client_reference_id") != user || f.Get("metadata[user_id]") != user ||
		f.Get("line_items[0][price]") != e2ePricePro || f.Get("success_url") != publicURL+"/account/api-keys?checkout=success" ||
		f.Get("cancel_url") != publicURL+"/account/api-keys?checkout=cancel" || f.Get("customer") != "" || sessions[0].IdempotencyKey == "" {
		t.Fatalf("checkout session form %v (idempotency key %q)", f, sessions[0].IdempotencyKey)
	}
	wantProblem(t, "checkout of a plan the catalog lacks", a.do(http.MethodPost, a.base+"/billing/checkout", []byte(`{"plan":"gold"}`), auth...), 400, "")
	wantProblem(t, "portal before any checkout", a.do(http.MethodPost, a.base+"/billing/portal", nil, auth...), 404, "No billing account for this user")

	// Stripe's events, signed; the subscription as Stripe reports it when read.
	now := time.Now().Unix()
	sub := map[string]any{
		"id": subID, "object": "subscription", "customer": customer, "status": "active", "created": now,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_e2e_billing", "object": "subscription_item", "price": map[string]any{"id": e2ePricePro, "object": "price"},
		}}},
	}
	proxy.setSubscription(subID, sub)
	a.webhook(t, "evt_bill_checkout", "checkout.session.completed", map[string]any{
		"id": "cs_e2e_billing", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": user, "customer": customer, "subscription": subID,
	}, now)
	a.webhook(t, "evt_bill_sub", "customer.subscription.created", sub, now)

	// The key, revealed once.
	if kl := a.keys(token); !kl.RevealPending || len(kl.Keys) != 1 || kl.Keys[0].Plan != "pro" || kl.Keys[0].MonthlyCallLimit != 10000 {
		t.Fatalf("after the webhooks: %+v", kl)
	}
	r = a.do(http.MethodPost, a.base+"/keys/reveal", nil, auth...)
	var nk struct{ Key, ID string }
	if r.status != 200 || json.Unmarshal(r.body, &nk) != nil || !strings.HasPrefix(nk.Key, apikeyPrefix) {
		t.Fatalf("reveal: %d %s", r.status, r.body)
	}
	wantProblem(t, "second reveal", a.do(http.MethodPost, a.base+"/keys/reveal", nil, auth...), 404, "No key waiting to be revealed")

	// The portal, for the customer the checkout bound.
	r = a.do(http.MethodPost, a.base+"/billing/portal", nil, auth...)
	if r.status != 200 || json.Unmarshal(r.body, &redirect) != nil || !strings.HasPrefix(redirect.URL, "https://") {
		t.Fatalf("portal: %d %s", r.status, r.body)
	}
	portals := proxy.callsTo(http.MethodPost, "/v1/billing_portal/sessions")
	if len(portals) != 1 || portals[0].Form.Get("customer") != customer || portals[0].Form.Get("return_url") != publicURL+"/account/api-keys" {
		t.Fatalf("portal sessions %+v", portals)
	}

	// Calls on both sides of a restart, all in one minute where the clock allows.
	// The first meter event to go out is accepted and its answer held: whichever
	// server sends it stops before it hears that it went through.
	if s := time.Now().Second(); s > 40 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	proxy.holdNextMeterEvent()
	search := "/events/search?q=earnings"
	callN := func(in *instance, n int) {
		t.Helper()
		for i := range n {
			if r := in.get(search, "x-api-key", nk.Key); r.status != 200 {
				t.Fatalf("call %d: %d %s", i+1, r.status, r.body)
			}
		}
	}
	callN(a, n1)
	a.stop(true) // restart 1: the gate writes the ledger as it closes
	b := start(t, bin, env)
	callN(b, n2)
	// Nothing goes out before the minute has closed and a second has passed.
	var held meterEvent
	select {
	case held = <-proxy.held:
	case <-time.After(100 * time.Second):
		t.Fatalf("no meter event within 100 s\n%s", b.log)
	}
	b.stop(true) // restart 2: the event was sent, and not marked so
	c := start(t, bin, env)

	// The third server sends the pending event again, with the same identifier and
	// value; Stripe (the proxy) refuses the copy, which the reporter takes as sent.
	deadline := time.Now().Add(100 * time.Second)
	for {
		accepted, dups := proxy.events()
		if len(dups) > 0 && sumValues(accepted) == n1+n2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restarts: accepted %+v, resends %+v\n%s", accepted, dups, c.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let a few more passes run: nothing more may go out.
	time.Sleep(2500 * time.Millisecond)
	accepted, dups := proxy.events()

	kl := c.keys(token)
	keyID := kl.Keys[0].ID
	seen := map[string]bool{}
	for _, e := range accepted {
		bucket := time.Unix(e.Timestamp, 0).UTC()
		if e.EventName != meterName || e.Customer != customer || e.Value <= 0 || bucket.Second() != 0 ||
			!meterIdentifier.MatchString(e.Identifier) || e.Identifier != entitlement.MeterIdentifier(keyID, bucket, 0) || seen[e.Identifier] {
			t.Errorf("meter event %+v (key %s)", e, keyID)
		}
		seen[e.Identifier] = true
	}
	if sumValues(accepted) != n1+n2 {
		t.Errorf("meter events carry %d calls, want %d: %+v", sumValues(accepted), n1+n2, accepted)
	}
	if len(dups) != 1 || dups[0] != held {
		t.Errorf("resends %+v, want one: the held event %+v", dups, held)
	}

	// The database's reports are the events Stripe accepted, all marked sent.
	var reports []struct {
		Identifier string `db:"identifier"`
		CustomerID string `db:"customer_id"`
		Calls      int64  `db:"calls"`
		Status     string `db:"status"`
	}
	if err := openDB().Select(&reports, `SELECT identifier, customer_id, calls, status FROM entitlement_usage_reports ORDER BY period`); err != nil {
		t.Fatal(err)
	}
	if len(reports) != len(accepted) {
		t.Errorf("%d reports in the database, %d events accepted", len(reports), len(accepted))
	}
	for _, rep := range reports {
		e, ok := proxy.event(rep.Identifier)
		if !ok || rep.Status != entitlement.ReportSent || rep.Calls != e.Value || rep.CustomerID != customer {
			t.Errorf("report %+v, event %+v", rep, e)
		}
	}

	// The usage view and the operator's report agree with Stripe.
	r = c.get("/keys/usage", "Authorization", "Bearer "+token)
	var usage struct {
		TotalCalls       int64 `json:"total_calls"`
		CallsUsed        int64 `json:"calls_used"`
		MonthlyCallLimit int64 `json:"monthly_call_limit"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &usage) != nil {
		t.Fatalf("usage: %d %s", r.status, r.body)
	}
	if usage.TotalCalls != n1+n2 || usage.CallsUsed != n1+n2 || usage.MonthlyCallLimit != 10000 {
		t.Errorf("GET /keys/usage: %s", r.body)
	}
	report := c.adminCmd("usage", "--user", user)
	fields := strings.Fields(strings.Split(report, "\n")[1])
	want := []string{user, strconv.Itoa(n1 + n2), strconv.Itoa(n1 + n2), "0", "0", "0", "0"}
	if !slices.Equal(fields, want) {
		t.Errorf("admin usage:\n%s\nwant the row %v", report, want)
	}
	metrics := c.do(http.MethodGet, c.admin+"/metrics", nil)
	for _, line := range []string{"tollgate_meter_events_duplicate_total 1", "tollgate_meter_pending 0", "tollgate_meter_events_failed_total 0"} {
		if !bytes.Contains(metrics.body, []byte(line+"\n")) {
			t.Errorf("/metrics of the third server lacks %q", line)
		}
	}
	for _, in := range []*instance{a, b, c} {
		if strings.Contains(in.log.String(), nk.Key) || strings.Contains(in.log.String(), "sk_test_4eC39HqLyjWDarjtT1zdp7dc") {
			t.Error("a log holds the raw key or the Stripe API key")
		}
	}

	// Rotation with a grace period: the old key keeps working, shown expiring.
	wantProblem(t, "rotation with a bad grace", c.do(http.MethodPost, c.base+"/keys/rotate", []byte(`{"grace_seconds":-5}`), auth...),
		400, `Invalid body field "grace_seconds": must be an integer from 0 to 604800`)
	r = c.do(http.MethodPost, c.base+"/keys/rotate", []byte(`{"grace_seconds":3600}`), auth...)
	var rotated struct{ Key string }
	if r.status != 200 || json.Unmarshal(r.body, &rotated) != nil {
		t.Fatalf("rotate with grace: %d %s", r.status, r.body)
	}
	for _, raw := range []string{nk.Key, rotated.Key} {
		if r := c.get(search, "x-api-key", raw); r.status != 200 {
			t.Errorf("during the grace: %d %s", r.status, r.body)
		}
	}
	if r := c.get("/keys", "Authorization", "Bearer "+token); !bytes.Contains(r.body, []byte(`"status":"expiring"`)) || !bytes.Contains(r.body, []byte(`"expires_at":`)) {
		t.Errorf("GET /keys after a rotation with grace: %s", r.body)
	}

	var ids []string
	for _, e := range accepted {
		ids = append(ids, fmt.Sprintf("%s=%d@%s", e.Identifier, e.Value, time.Unix(e.Timestamp, 0).UTC().Format("15:04")))
	}
	t.Logf("calls %d+%d around restart 1; meter events accepted %d (%s), resends refused as duplicates %d (%s, value %d); "+
		"checkout sessions %d, portal sessions %d; admin usage:\n%s",
		n1, n2, len(accepted), strings.Join(ids, ", "), len(dups), held.Identifier, held.Value,
		len(proxy.callsTo(http.MethodPost, "/v1/checkout/sessions")), len(portals), report)
	c.stop(true)
}
