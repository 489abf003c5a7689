package entitlement_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
)

// Signed events whose identifiers no database keeps alike (a NUL byte, which
// PostgreSQL's text refuses; control characters; a comma in a price ID, which the
// SQL store joins prices with; 300-byte IDs) or whose times are out of range are
// malformed: 400 on every backend, never a 503 that Stripe would retry for three
// days, and nothing of them is stored.
func TestWebhookHostileInput(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		long := "sub_" + strings.Repeat("x", 300)
		sub := func(id, customer, status, price string) map[string]any {
			return subscription(t, id, customer, status, price, month)
		}
		refused := []struct {
			name string
			e    ev
		}{
			// stripe-go keeps an expandable field's ID as the raw JSON text: escapes
			// stay escapes, but raw bytes that are not UTF-8 stay too (see below).
			{"300-byte customer", ev{typ: "customer.subscription.created", obj: sub("sub_1", "cus_"+strings.Repeat("x", 300), "active", priceGold)}},
			{"NUL in the subscription", ev{typ: "customer.subscription.updated", obj: sub("sub_\x00", "cus_1", "active", priceGold)}},
			{"control character in the status", ev{typ: "customer.subscription.updated", obj: sub("sub_1", "cus_1", "act\x01ive", priceGold)}},
			{"comma in a price", ev{typ: "customer.subscription.created", obj: sub("sub_1", "cus_1", "active", priceGold+",price_x")}},
			{"300-byte subscription ID", ev{typ: "customer.subscription.created", obj: sub(long, "cus_1", "active", priceGold)}},
			{"NUL in the event ID", ev{id: "evt_\x00", typ: "customer.subscription.created", obj: sub("sub_1", "cus_1", "active", priceGold)}},
			{"event created in the year 33658", ev{typ: "customer.subscription.created", obj: sub("sub_1", "cus_1", "active", priceGold), created: 1e12}},
			{"NUL in the invoice", ev{typ: "invoice.paid", obj: invoice(t, "in_\x00", "cus_1", "sub_1", priceGold, true, h.created)}},
			{"invoice created before 1970", ev{typ: "invoice.paid", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, true, -5)}},
			{"invalid UTF-8 in the checkout's customer", ev{typ: "checkout.session.completed", obj: checkout(t, "cus_RAW", "sub_1", "user_1", "paid")}},
			{"invalid UTF-8 in the subscription's customer", ev{typ: "customer.subscription.created", obj: sub("sub_1", "cus_RAW", "active", priceGold)}},
		}
		for _, r := range refused {
			body := bytes.ReplaceAll(h.build(&r.e), []byte("cus_RAW"), []byte("cus_\xff\xfe"))
			status, detail := h.postRaw(body, sign(body, h.secret, time.Now()))
			if status != http.StatusBadRequest || !strings.Contains(detail, problem.Detail(problem.MalformedEvent)) {
				t.Fatalf("%s: %d %s, want 400 %q", r.name, status, detail, problem.Detail(problem.MalformedEvent))
			}
		}
		// A checkout naming an unusable user is ignored (Stripe need not retry it).
		h.expect(entitlement.OutcomeIgnored, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_\x00", "paid")})
		if h.db != nil {
			for _, table := range []string{"entitlement_events", "entitlement_subscriptions", "entitlement_customers"} {
				var n int
				if err := h.db.Get(&n, "SELECT COUNT(*) FROM "+table); err != nil || n != 0 {
					t.Fatalf("%s holds %d rows (%v) after the refusals", table, n, err)
				}
			}
		}
		// The same events, well formed, apply.
		h.bindGold("user_1", "cus_1", "sub_1")
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
	})
}
