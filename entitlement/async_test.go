package entitlement_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// permutations returns every order of n items, as index lists.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// step is one event of an asynchronous checkout, with what it tells once it
// has arrived.
type step struct {
	name  string
	event func(user, cus, sub string) ev
	binds bool // it names the user (a checkout session)
	paid  bool // it makes the subscription active
}

// deliver posts e and fails the test unless it is answered 200.
func (h *harness) deliver(e ev) string {
	h.t.Helper()
	body := h.build(&e)
	status, outcome := h.postRaw(body, sign(body, h.secret, time.Now()))
	if status != http.StatusOK {
		h.t.Fatalf("%s: status %d: %s", e.typ, status, outcome)
	}
	return outcome
}

// TestAsyncCheckoutEveryOrder: a checkout paid by a delayed method (issue 12).
// Stripe creates, in this order, the subscription (incomplete), the completed
// session (payment_status unpaid), the payment's success, the subscription's
// activation and the first invoice's payment, and delivers them in any order.
// Whatever the order, the user has a key exactly from the moment the binding
// (a session event) and the activation (the subscription update or the paid
// invoice) have both arrived, and one key in all. When the payment fails
// instead, no order ever grants anything: an unpaid session never grants by
// itself.
func TestAsyncCheckoutEveryOrder(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-time.Hour).Unix()
	at := func(e ev, offset int64) ev { e.created = t0 + offset; return e }
	succeeded := []step{
		{name: "created(incomplete)", event: func(u, c, s string) ev {
			return at(ev{typ: "customer.subscription.created", obj: subscription(t, s, c, "incomplete", priceGold, month)}, 1)
		}},
		{name: "completed(unpaid)", binds: true, event: func(u, c, s string) ev {
			return at(ev{typ: "checkout.session.completed", obj: checkout(t, c, s, u, "unpaid")}, 2)
		}},
		{name: "async_payment_succeeded", binds: true, event: func(u, c, s string) ev {
			return at(ev{typ: "checkout.session.async_payment_succeeded", obj: checkout(t, c, s, u, "paid")}, 3)
		}},
		{name: "updated(active)", paid: true, event: func(u, c, s string) ev {
			return at(ev{typ: "customer.subscription.updated", obj: subscription(t, s, c, "active", priceGold, month)}, 4)
		}},
		{name: "invoice.paid", paid: true, event: func(u, c, s string) ev {
			return at(ev{typ: "invoice.paid", obj: invoice(t, "in_"+s, c, s, priceGold, true, t0)}, 5)
		}},
	}
	failed := []step{
		succeeded[0], succeeded[1],
		{name: "async_payment_failed", binds: true, event: func(u, c, s string) ev {
			return at(ev{typ: "checkout.session.async_payment_failed", obj: checkout(t, c, s, u, "unpaid")}, 3)
		}},
		{name: "invoice.payment_failed", event: func(u, c, s string) ev {
			return at(ev{typ: "invoice.payment_failed", obj: invoice(t, "in_"+s, c, s, priceGold, false, t0)}, 3)
		}},
		{name: "updated(incomplete_expired)", event: func(u, c, s string) ev {
			return at(ev{typ: "customer.subscription.updated", obj: subscription(t, s, c, "incomplete_expired", priceGold, month)}, 5)
		}},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		run := func(kind string, steps []step, n int, order []int) {
			user, cus, sub := fmt.Sprintf("user_%s%d", kind, n), fmt.Sprintf("cus_%s%d", kind, n), fmt.Sprintf("sub_%s%d", kind, n)
			var names []string
			bound, paid := false, false
			for _, i := range order {
				st := steps[i]
				names = append(names, st.name)
				h.deliver(st.event(user, cus, sub))
				bound, paid = bound || st.binds, paid || st.paid
				active := 0
				for _, k := range h.keys(user) {
					if k.Active() {
						active++
					}
				}
				if want := map[bool]int{true: 1, false: 0}[bound && paid]; active != want {
					t.Fatalf("%s order %s: after %s the user has %d active keys, want %d", kind, strings.Join(names, ", "), st.name, active, want)
				}
			}
			if paid {
				h.check(user, want{active: 1, plan: planGold, limit: goldLimit, total: 1})
			} else {
				h.check(user, want{active: 0, total: 0})
			}
		}
		ok, ko := succeeded, failed
		if h.db != nil {
			// The rules are the Service's, the same on every store: on SQL, where a
			// delivery costs a transaction, every order of the four events without
			// the invoice (24 of each) shows the store keeps what they need; memory
			// runs all 120 orders of the five.
			ok, ko = succeeded[:4], failed[:3:3]
			ko = append(ko, failed[4])
		}
		for n, order := range permutations(len(ok)) {
			run("ok", ok, n, order)
		}
		for n, order := range permutations(len(ko)) {
			run("ko", ko, n, order)
		}
	})
}
