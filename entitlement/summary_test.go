package entitlement_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
)

const (
	featureGold     = "gold-api"
	featurePlatinum = "platinum-api"
)

// withFeatures maps feature lookup keys to the tests' paid plans.
func withFeatures(c *entitlement.Config) {
	gold, platinum := c.Catalog[planGold], c.Catalog[planPlatinum]
	gold.Features, platinum.Features = []string{featureGold}, []string{featurePlatinum}
	c.Catalog[planGold], c.Catalog[planPlatinum] = gold, platinum
}

// summary is an entitlements.active_entitlement_summary object: the customer's
// active entitlements, one per lookup key.
func summary(customer any, keys ...string) map[string]any {
	data := []any{}
	for i, k := range keys {
		data = append(data, map[string]any{
			"id": fmt.Sprintf("ent_test_%d", i), "object": "entitlements.active_entitlement",
			"feature": "feat_" + strings.ReplaceAll(k, "-", "_"), "livemode": false, "lookup_key": k,
		})
	}
	return map[string]any{
		"object": "entitlements.active_entitlement_summary", "customer": customer, "livemode": false,
		"entitlements": map[string]any{"object": "list", "data": data, "has_more": false, "url": "/v1/entitlements/active_entitlements"},
	}
}

const typeSummary = "entitlements.active_entitlement_summary.updated"

// The plan follows the customer's entitlement summaries, mapped through the
// catalog's Features, with the rules of subscription events: a summary for a
// customer not yet bound waits for the binding, duplicates change nothing, a
// newer summary replaces an older one and an older one arriving late is ignored.
func TestEntitlementSummary(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, withFeatures)

		// Before the checkout that binds the customer: kept, applied with the binding.
		first := h.expect(entitlement.OutcomeUnbound, ev{typ: typeSummary, obj: summary("cus_1", featureGold)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
		h.expect(entitlement.OutcomeDuplicate, ev{id: first.id, typ: typeSummary, obj: first.obj})

		// An upgrade; the summary it replaces, delivered late, is ignored.
		stale := ev{typ: typeSummary, obj: summary("cus_1", featureGold)}
		h.build(&stale) // created before the upgrade…
		h.expect(entitlement.OutcomeGranted, ev{typ: typeSummary, obj: summary("cus_1", featureGold, featurePlatinum, "other-product")})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 2})
		h.expect(entitlement.OutcomeIgnored, stale) // …delivered after it
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 2})

		// Lookup keys the catalog does not map grant nothing; no entitlement revokes.
		h.expect(entitlement.OutcomeRevoked, ev{typ: typeSummary, obj: summary("cus_1", "other-product")})
		h.check("user_1", want{active: 0, total: 2})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: typeSummary, obj: summary("cus_1")})

		// A subscription and a summary of the same customer: the higher plan wins,
		// and the summary's loss leaves the subscription's plan.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: typeSummary, obj: summary(map[string]any{"id": "cus_1", "object": "customer"}, featurePlatinum)})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 4})
		h.expect(entitlement.OutcomeGranted, ev{typ: typeSummary, obj: summary("cus_1", featureGold)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 5})

		// Malformed summaries are refused and change nothing.
		for name, obj := range map[string]map[string]any{
			"no customer":     summary(nil, featurePlatinum),
			"no entitlements": {"object": "entitlements.active_entitlement_summary", "customer": "cus_1"},
			"NUL lookup key":  summary("cus_1", "plat\x00inum"),
		} {
			e := ev{typ: typeSummary, obj: obj}
			body := h.build(&e)
			if status, detail := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusBadRequest ||
				!strings.Contains(detail, problem.Detail(problem.MalformedEvent)) {
				t.Fatalf("%s: %d %s, want 400", name, status, detail)
			}
		}
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 5})
	})
}

// Without plans that name features, summaries are not the Service's business.
func TestEntitlementSummaryWithoutFeatures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, backends[0], nil)
	h.expect(entitlement.OutcomeIgnored, ev{typ: typeSummary, obj: summary("cus_1", featureGold)})
	h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
	h.check("user_1", want{active: 0, total: 0})
}

// Summary and checkout in either order, with the summary also arriving twice
// under different IDs: one key.
func TestEntitlementSummaryEveryOrder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, withFeatures)
		t0 := time.Now().Add(-time.Hour).Unix()
		for n, order := range permutations(3) {
			user, cus := fmt.Sprintf("user_%d", n), fmt.Sprintf("cus_%d", n)
			events := []ev{
				{typ: typeSummary, obj: summary(cus, featurePlatinum), created: t0 + 2},
				{typ: typeSummary, obj: summary(cus, featurePlatinum), created: t0 + 2},
				{typ: "checkout.session.completed", obj: checkout(t, cus, "sub_"+cus, user, "paid"), created: t0 + 1},
			}
			for _, i := range order {
				h.deliver(events[i])
			}
			h.check(user, want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})
		}
	})
}
