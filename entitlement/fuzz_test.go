package entitlement_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/memstore"
)

// fuzzSecret signs the fuzzer's bodies when it asks for a valid signature.
const fuzzSecret = "whsec_fuzz"

var outcomes = map[string]bool{
	entitlement.OutcomeGranted: true, entitlement.OutcomeRevoked: true, entitlement.OutcomeUnchanged: true,
	entitlement.OutcomeUnbound: true, entitlement.OutcomeDuplicate: true, entitlement.OutcomeIgnored: true,
}

// FuzzWebhook feeds ServeHTTP arbitrary bodies, signed with the endpoint's secret
// (signed) or carrying an arbitrary Stripe-Signature header: whatever the body, the
// webhook never panics and never answers 5xx (a bad body is the sender's fault,
// and a 5xx would have Stripe retry it for days); refusals are problem+json, and a
// 200 names an outcome. The seed corpus (testdata/fuzz/FuzzWebhook, plus the
// events below) holds each event type the Service acts on.
func FuzzWebhook(f *testing.F) {
	h := &harness{t: f, created: time.Now().Add(-time.Hour).Unix()}
	seeds := []ev{
		{typ: "customer.subscription.created", obj: subscription(f, "sub_1", "cus_1", "active", priceGold, month)},
		{typ: "checkout.session.completed", obj: checkout(f, "cus_1", "sub_1", "user_1", "paid")},
		{typ: "checkout.session.completed", obj: checkout(f, "cus_1", "sub_1", "user_1", "unpaid")},
		{typ: "invoice.payment_failed", obj: invoice(f, "in_1", "cus_1", "sub_1", priceGold, false, h.created)},
		{typ: typeSummary, obj: summary("cus_1", featureGold)},
	}
	for _, e := range seeds {
		body := h.build(&e)
		f.Add(body, true, "")
		f.Add(body, false, "t=1,v1=00")
	}
	f.Fuzz(func(t *testing.T, body []byte, signed bool, header string) {
		cfg := entitlement.Config{
			Catalog: testCatalog(), Keys: keystest.New(apimem.New()), WebhookSecret: fuzzSecret,
			SealKey: make([]byte, entitlement.SealKeySize), Logger: slog.New(slog.DiscardHandler),
		}
		withFeatures(&cfg)
		svc, err := entitlement.New(memstore.New(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if signed {
			header = sign(body, fuzzSecret, time.Now())
		}
		// Twice: the second delivery meets what the first stored.
		for range 2 {
			req := httptest.NewRequest(http.MethodPost, "/billing/webhook", bytes.NewReader(body))
			req.Header.Set("Stripe-Signature", header)
			rec := httptest.NewRecorder()
			svc.ServeHTTP(rec, req)
			switch {
			case rec.Code >= 500:
				t.Fatalf("answered %d to a bad body: %s", rec.Code, rec.Body)
			case rec.Code != http.StatusOK:
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("%d answered with Content-Type %q", rec.Code, ct)
				}
			default:
				var out struct {
					Received bool
					Outcome  string
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !out.Received || !outcomes[out.Outcome] {
					t.Fatalf("200 with body %q", rec.Body)
				}
			}
		}
	})
}
