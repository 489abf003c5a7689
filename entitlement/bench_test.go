package entitlement_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
)

// BenchmarkWebhook measures one verified delivery through ServeHTTP (no network):
// a subscription update that changes nothing ("unchanged": verify, decode, one
// transaction that records the event and re-derives the plan), and a redelivery
// ("duplicate").
func BenchmarkWebhook(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchWebhook(b, be) })
	}
}

func benchWebhook(b *testing.B, be backend) {
	h := newHarness(b, be, func(c *entitlement.Config) { c.Logger = slog.New(slog.DiscardHandler) })
	h.bindGold("user_1", "cus_1", "sub_1")
	e := ev{id: "evt_bench_XXXXXXXXXX", typ: "customer.subscription.updated", obj: subscription(h.t, "sub_1", "cus_1", "active", priceGold, month)}
	tmpl := h.build(&e)
	serve := func(body []byte) int {
		req := httptest.NewRequest(http.MethodPost, "/billing/webhook", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", sign(body, h.secret, time.Now()))
		rec := httptest.NewRecorder()
		h.svc.ServeHTTP(rec, req)
		return rec.Code
	}
	b.Run("unchanged", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			body := bytes.Replace(tmpl, []byte("evt_bench_XXXXXXXXXX"), fmt.Appendf(nil, "evt_bench_%010d", i), 1)
			if code := serve(body); code != http.StatusOK {
				b.Fatalf("status %d", code)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		for b.Loop() {
			if code := serve(tmpl); code != http.StatusOK {
				b.Fatalf("status %d", code)
			}
		}
	})
}
