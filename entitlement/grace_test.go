package entitlement_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/memstore"
)

const testGrace = time.Hour

// withGrace sets Config.RotateGrace to testGrace.
func withGrace(c *entitlement.Config) { c.RotateGrace = testGrace }

// current returns the user's one key that is active and not expiring, and the
// expiring ones.
func (h *harness) current(user string) (cur apikey.Key, expiring []apikey.Key) {
	h.t.Helper()
	n := 0
	for _, k := range h.keys(user) {
		switch {
		case k.Expiring():
			expiring = append(expiring, k)
		case k.Active():
			cur = k
			n++
		}
	}
	if n != 1 {
		h.t.Fatalf("user %s has %d current keys, want 1: %s", user, n, h.describe(h.keys(user)))
	}
	return cur, expiring
}

// platinumThenGold brings user_1 to platinum (a first plan: nothing to keep) and
// changes the subscription to gold, a paid plan replacing another. It returns the
// platinum key as it was.
func platinumThenGold(t *testing.T, h *harness) apikey.Key {
	t.Helper()
	h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
	h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
	platinum := h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})[0]
	h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
	return platinum
}

// A change from one paid plan to another with Config.RotateGrace keeps the old
// key working for the grace, on the new plan and the new key's quota; the new key
// is the one revealed. A first plan is issued without grace.
func TestPlanChangeWithGrace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, withGrace)
		start := time.Now()
		platinum := platinumThenGold(t, h)
		if g := h.issuer.Graces(); len(g) != 2 || g[0] != 0 || g[1] != testGrace {
			t.Fatalf("graces passed to Issue: %v, want [0 %v] (the first plan, then the change)", g, testGrace)
		}
		gold, expiring := h.current("user_1")
		if limit, _ := h.issuer.Limit(gold.ID); gold.Plan != planGold || limit != goldLimit {
			t.Errorf("the new key: plan %s limit %d, want gold and %d", gold.Plan, limit, goldLimit)
		}
		if len(expiring) != 1 || expiring[0].ID != platinum.ID {
			t.Fatalf("expiring keys %s, want the platinum key", h.describe(expiring))
		}
		old := expiring[0]
		// On the new plan, spending the new key's quota, until the grace ends.
		if old.Plan != planGold || old.QuotaID != gold.QuotaID || old.RevokeReason != "" {
			t.Errorf("the replaced key: plan %s quota %s reason %q; want gold, %s, none", old.Plan, old.QuotaID, old.RevokeReason, gold.QuotaID)
		}
		if old.ExpiresAt.Before(start.Add(testGrace).Add(-time.Second)) || old.ExpiresAt.After(time.Now().Add(testGrace)) {
			t.Errorf("the replaced key expires at %v, want about %v from now", old.ExpiresAt, testGrace)
		}
		if old.StatusAt(time.Now()) != apikey.StatusExpiring {
			t.Errorf("the replaced key shows %s, want expiring", old.StatusAt(time.Now()))
		}
		raw, err := h.svc.Reveal(ctx, "user_1")
		if err != nil || apikey.Hash(raw) != gold.Hash {
			t.Fatalf("Reveal = %v; want the new key", err)
		}
	})
}

// Losing the paid plan revokes every key at once, the expiring one included,
// whatever RotateGrace says: a cancellation, and a failed payment.
func TestNoPaidPlanRevokesAtOnceDespiteGrace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		t.Run("cancellation", func(t *testing.T) {
			h := newHarness(t, b, withGrace)
			platinumThenGold(t, h)
			deleted := subscription(t, "sub_1", "cus_1", "canceled", priceGold, month)
			deleted["ended_at"], deleted["canceled_at"] = month.end, month.end
			h.expect(entitlement.OutcomeRevoked, ev{typ: "customer.subscription.deleted", obj: deleted})
			h.check("user_1", want{active: 0, total: 2})
			if g := h.issuer.Graces(); len(g) != 2 {
				t.Errorf("Issue was called again: graces %v", g)
			}
		})
		t.Run("payment failed", func(t *testing.T) {
			h := newHarness(t, b, withGrace)
			platinumThenGold(t, h)
			h.expect(entitlement.OutcomeRevoked, ev{typ: "invoice.payment_failed", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, false, h.created)})
			h.check("user_1", want{active: 0, total: 2})
		})
	})
}

// Without RotateGrace (the default) a plan change revokes the old key at once,
// as before; an operator's Grant never keeps the old key either.
func TestPlanChangeWithoutGrace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, nil)
		platinumThenGold(t, h)
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})

		g := newHarness(t, b, withGrace)
		if _, err := g.svc.Grant(ctx, "user_2", planGold, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := g.svc.Grant(ctx, "user_2", planPlatinum, 0); err != nil {
			t.Fatal(err)
		}
		g.check("user_2", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 2})
	})
}

// On SQL the retirement commits with the event or not at all: a delivery that
// fails leaves the old key as it was (not expiring, on its own plan and quota),
// and Stripe's retry applies the change.
func TestPlanChangeWithGraceRollsBack(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		if b.name == "memstore" {
			return // no transactions to roll back
		}
		d := &recordingDelivery{}
		h := newHarness(t, b, func(c *entitlement.Config) { withGrace(c); c.Delivery = d; c.SealKey = nil })
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		platinum := h.keys("user_1")[0]

		d.mu.Lock()
		d.fail = true
		d.mu.Unlock()
		e := ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)}
		body := h.build(&e)
		if status, _ := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusServiceUnavailable {
			t.Fatalf("failed delivery: %d, want 503", status)
		}
		if keys := h.keys("user_1"); len(keys) != 1 || keys[0] != platinum {
			t.Fatalf("after the rolled-back change: %s; want the platinum key unchanged", h.describe(keys))
		}
		d.mu.Lock()
		d.fail = false
		d.mu.Unlock()
		if status, outcome := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusOK || outcome != entitlement.OutcomeGranted {
			t.Fatalf("Stripe's retry: %d %s", status, outcome)
		}
		if _, expiring := h.current("user_1"); len(expiring) != 1 || expiring[0].ID != platinum.ID {
			t.Fatalf("after the retry the expiring keys are %s, want the platinum key", h.describe(expiring))
		}
	})
}

// A key waiting to be revealed that the user rotated with a grace is not shown:
// the user has its successor already.
func TestRevealSkipsExpiringKey(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, nil)
		h.bindGold("user_1", "cus_1", "sub_1")
		_, next, err := apikey.New(keystest.Prefix, "", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.issuer.Keys().Rotate(ctx, "user_1", &next, time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Reveal(ctx, "user_1"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("Reveal of a key rotated with grace: %v, want ErrNothingToReveal", err)
		}
	})
}

func TestNewChecksRotateGrace(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		grace time.Duration
		ok    bool
	}{{0, true}, {apikey.MaxGrace, true}, {-time.Second, false}, {apikey.MaxGrace + time.Second, false}} {
		_, err := entitlement.New(memstore.New(), entitlement.Config{Catalog: testCatalog(), Keys: keystest.New(apimem.New()), RotateGrace: c.grace})
		if (err == nil) != c.ok {
			t.Errorf("RotateGrace %v: New = %v, want ok=%v", c.grace, err, c.ok)
		}
	}
}
