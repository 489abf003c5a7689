package entitlement_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// An operator grants a plan by hand, as `releaseradar admin grant` does.
func ExampleService_Grant() {
	store := memstore.New(apimem.New())
	svc, err := entitlement.New(store, entitlement.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	raw, _ := svc.Grant(ctx, "user_42", entitlement.Pro, 0) // 0: the plan's limit
	keys, _ := store.Keys().ListByUser(ctx, "user_42")
	fmt.Println(strings.HasPrefix(raw, "rr_live_"), keys[0].Plan, keys[0].MonthlyCallLimit)

	_, err = svc.Grant(ctx, "user_42", "gold", 0)
	fmt.Println(errors.Is(err, entitlement.ErrUnknownPlan))
	// Output:
	// true pro 10000
	// true
}

// Stripe's events arrive signed; the key they buy waits, sealed, for its owner.
func ExampleService_ServeHTTP() {
	secret := "whsec_example"
	sealKey := make([]byte, entitlement.SealKeySize)
	_, _ = rand.Read(sealKey)
	store := memstore.New(apimem.New())
	svc, err := entitlement.New(store, entitlement.Config{
		Prices:        map[string]string{"price_pro_monthly": entitlement.Pro},
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
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"id": "si_1", "price": map[string]any{"id": "price_pro_monthly"}}}},
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
	fmt.Println(pending, strings.HasPrefix(raw, "rr_live_"), errors.Is(again, entitlement.ErrNothingToReveal))
	// Output:
	// customer.subscription.created 200 {"received":true,"outcome":"unbound"}
	// checkout.session.completed 200 {"received":true,"outcome":"granted"}
	// checkout.session.completed 200 {"received":true,"outcome":"duplicate"}
	// true true true
}

func ExampleCatalog_Names() {
	cat := entitlement.DefaultCatalog()
	for _, name := range cat.Names() {
		p := cat[name]
		fmt.Println(p.Name, p.Rank, p.MonthlyCallLimit, p.Rate)
	}
	// Output:
	// public 0 0 30-M
	// pro 1 10000 600-M
	// team 2 100000 3000-M
}
