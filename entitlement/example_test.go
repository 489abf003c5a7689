package entitlement_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// plans is an application's catalog: a free plan without a quota and a paid one
// that Stripe's price price_gold_monthly buys.
var plans = entitlement.Catalog{
	"free": {Name: "free", Rank: 0, Rate: "10-M"},
	"gold": {Name: "gold", Rank: 1, MonthlyCallLimit: 5000, Rate: "100-M", Prices: []string{"price_gold_monthly"}},
}

// keyIssuer is a KeyIssuer on an apikey store. A real one also gives each key its
// quota (a quota store's Put of k.QuotaID with limit) with the context it is
// handed, so that both join the Service's transaction; here the limit is printed.
type keyIssuer struct{ keys apikey.Store }

func (i keyIssuer) Issue(ctx context.Context, userID, plan string, limit int64, reason string, grace time.Duration) (string, apikey.Key, error) {
	now := time.Now()
	if _, err := i.keys.RevokeUser(ctx, userID, reason, now); err != nil {
		return "", apikey.Key{}, err
	}
	raw, k, err := apikey.New(apikey.DefaultPrefix, userID, plan, now)
	if err != nil {
		return "", apikey.Key{}, err
	}
	if err := i.keys.Create(ctx, &k); err != nil {
		return "", apikey.Key{}, err
	}
	fmt.Printf("issued a %s key, %d calls a month (%s)\n", plan, limit, reason)
	return raw, k, nil
}

func (i keyIssuer) RevokeUser(ctx context.Context, userID, reason string) (int, error) {
	revoked, err := i.keys.RevokeUser(ctx, userID, reason, time.Now())
	return len(revoked), err
}

func (i keyIssuer) Key(ctx context.Context, id string) (apikey.Key, error) {
	return i.keys.ByID(ctx, id)
}

// An application defines its plans once and checks them at start-up.
func ExampleCatalog() {
	if err := plans.Validate(); err != nil {
		panic(err)
	}
	for _, name := range plans.Names() {
		p := plans[name]
		fmt.Println(p.Name, p.Rank, p.MonthlyCallLimit, p.Rate)
	}
	fmt.Println(plans.PlanForPrice("price_gold_monthly"))

	broken := entitlement.Catalog{"free": {Name: "free", Prices: []string{"price_x"}}}
	fmt.Println(broken.Validate())
	// Output:
	// free 0 0 10-M
	// gold 1 5000 100-M
	// gold true
	// entitlement: plan "free" has prices but no monthly call limit
}

// An operator grants a plan by hand, as `releaseradar admin grant` does.
func ExampleService_Grant() {
	keys := apimem.New()
	svc, err := entitlement.New(memstore.New(), entitlement.Config{
		Catalog: plans,
		Keys:    keyIssuer{keys},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	raw, _ := svc.Grant(ctx, "user_42", "gold", 0) // 0: the plan's limit
	k, _ := keys.ByHash(ctx, apikey.Hash(raw))
	fmt.Println(k.UserID, k.Plan, k.Active())

	_, err = svc.Grant(ctx, "user_42", "free", 0) // no quota to sell
	fmt.Println(errors.Is(err, entitlement.ErrUnknownPlan))
	// Output:
	// issued a gold key, 5000 calls a month (admin grant)
	// user_42 gold true
	// true
}

// Stripe's events arrive signed; the key they buy waits, sealed, for its owner.
func ExampleService_ServeHTTP() {
	secret := "whsec_example"
	sealKey := make([]byte, entitlement.SealKeySize)
	_, _ = rand.Read(sealKey)
	svc, err := entitlement.New(memstore.New(), entitlement.Config{
		Catalog:       plans,
		Keys:          keyIssuer{apimem.New()},
		WebhookSecret: secret,
		SealKey:       sealKey,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	deliver := func(id, typ string, object map[string]any) {
		body, _ := json.Marshal(map[string]any{
			"id": id, "object": "event", "type": typ, "api_version": stripe.APIVersion,
			"created": time.Now().Unix(), "livemode": false, "data": map[string]any{"object": object},
		})
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret})
		req := httptest.NewRequest(http.MethodPost, "/billing/webhook", strings.NewReader(string(body)))
		req.Header.Set("Stripe-Signature", signed.Header)
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		fmt.Println(typ, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	deliver("evt_1", "customer.subscription.created", map[string]any{
		"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"id": "si_1", "price": map[string]any{"id": "price_gold_monthly"}}}},
	})
	session := map[string]any{
		"id": "cs_1", "object": "checkout.session", "customer": "cus_1", "subscription": "sub_1",
		"client_reference_id": "user_42", "payment_status": "paid", "mode": "subscription",
	}
	deliver("evt_2", "checkout.session.completed", session)
	deliver("evt_2", "checkout.session.completed", session) // Stripe delivers it again

	ctx := context.Background()
	pending, _ := svc.Pending(ctx, "user_42")
	raw, _ := svc.Reveal(ctx, "user_42")
	_, again := svc.Reveal(ctx, "user_42")
	fmt.Println(pending, strings.HasPrefix(raw, apikey.DefaultPrefix), errors.Is(again, entitlement.ErrNothingToReveal))
	// Output:
	// customer.subscription.created 200 {"received":true,"outcome":"unbound"}
	// issued a gold key, 5000 calls a month (billing: plan changed to gold)
	// checkout.session.completed 200 {"received":true,"outcome":"granted"}
	// checkout.session.completed 200 {"received":true,"outcome":"duplicate"}
	// true true true
}

// stripeStandIn plays Stripe's API for the examples: it prints what it is sent and
// answers with the object it names.
func stripeStandIn(answer string, fields ...string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		line := r.URL.Path
		for _, f := range fields {
			line += " " + f + "=" + r.Form.Get(f)
		}
		fmt.Println(line)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
}

// A signed-in user asks to upgrade: Checkout returns the Stripe Checkout page to
// send them to. The webhook then grants the plan (see ExampleService_ServeHTTP).
func ExampleService_Checkout() {
	stripeAPI := stripeStandIn(`{"id":"cs_test_1","object":"checkout.session","url":"https://checkout.stripe.com/c/pay/cs_test_1"}`,
		"mode", "line_items[0][price]", "client_reference_id")
	defer stripeAPI.Close()
	quiet := slog.New(slog.DiscardHandler)
	svc, err := entitlement.New(memstore.New(), entitlement.Config{
		Catalog: plans,
		Keys:    keyIssuer{apimem.New()},
		Billing: entitlement.BillingConfig{
			APIKey:     "sk_test_example",
			Backend:    entitlement.NewStripeBackend(stripeAPI.URL, stripeAPI.Client(), quiet),
			SuccessURL: "https://api.example/account?checkout=done",
			CancelURL:  "https://api.example/account",
			ReturnURL:  "https://api.example/account",
		},
		Logger: quiet,
	})
	if err != nil {
		panic(err)
	}
	url, err := svc.Checkout(context.Background(), "user_42", "gold")
	fmt.Println(url, err)
	_, err = svc.Checkout(context.Background(), "user_42", "free") // nothing to sell
	fmt.Println(errors.Is(err, entitlement.ErrUnknownPlan))
	// Output:
	// /v1/checkout/sessions mode=subscription line_items[0][price]=price_gold_monthly client_reference_id=user_42
	// https://checkout.stripe.com/c/pay/cs_test_1 <nil>
	// true
}

// The gate records served calls into the ledger; the Reporter bills each key's
// closed minutes to its user's Stripe customer as meter events, and the ledger
// and what was reported agree.
func ExampleReporter() {
	stripeAPI := stripeStandIn(`{"object":"billing.meter_event"}`, "event_name", "payload[stripe_customer_id]", "payload[value]", "timestamp")
	defer stripeAPI.Close()
	ctx := context.Background()
	store := memstore.New() // the Service's Store, and the MeterLedger
	ten := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	_ = store.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error { // what a checkout's webhook does
		_, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "user_42", BoundAt: ten})
		return err
	})
	_ = store.Record(ctx, "", []entitlement.UsageRecord{ // what the gate's flush does
		{KeyID: "key_1", UserID: "user_42", Bucket: ten, Calls: 120},
		{KeyID: "key_1", UserID: "user_42", Bucket: ten.Add(time.Minute), Calls: 80},
	})
	now := ten.Add(3 * time.Minute)
	quiet := slog.New(slog.DiscardHandler)
	r, err := entitlement.NewReporter(store, entitlement.ReporterConfig{
		EventName: "api_calls",
		APIKey:    "sk_test_example",
		Backend:   entitlement.NewStripeBackend(stripeAPI.URL, stripeAPI.Client(), quiet),
		Customers: store,
		Now:       func() time.Time { return now },
		Logger:    quiet,
	})
	if err != nil {
		panic(err)
	}
	res, _ := r.ReportOnce(ctx)
	again, _ := r.ReportOnce(ctx)
	totals, _ := r.Totals(ctx, "user_42", ten, ten.Add(time.Hour))
	fmt.Println("sent:", res.Sent, "then:", again.Sent)
	fmt.Println("served:", totals[0].Served, "reported:", totals[0].Reported)
	// Output:
	// /v1/billing/meter_events event_name=api_calls payload[stripe_customer_id]=cus_1 payload[value]=120 timestamp=1795773600
	// /v1/billing/meter_events event_name=api_calls payload[stripe_customer_id]=cus_1 payload[value]=80 timestamp=1795773660
	// sent: 2 then: 0
	// served: 200 reported: 200
}
