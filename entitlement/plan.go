package entitlement

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
)

// Plan is what a subscription buys: a rank for route gating, a monthly call limit
// for the quota, a burst rate for the rate limiter, and the Stripe prices that buy
// it. The zero Plan is invalid (it has no Name).
type Plan struct {
	// Name is the plan's name, equal to its key in the Catalog: letters, digits,
	// '_', '.' and '-'.
	Name string
	// Rank orders plans for route gating: a key may call a route of a plan whose
	// rank is at most its own plan's. Ranks are >= 0.
	Rank int
	// MonthlyCallLimit is the quota of a key on this plan, in calls a cycle. 0
	// means no paid quota: an anonymous or free plan, which Grant refuses and
	// which no price may buy.
	MonthlyCallLimit int64
	// Rate is the burst rate in ulule's format ("100-M": 100 calls a minute; ""
	// for none). It is validated by whoever enforces it (the gate), not here.
	Rate string
	// Prices are the Stripe price IDs (price_…) whose subscriptions grant this
	// plan. A price belongs to at most one plan. Service.Checkout sells the first.
	Prices []string
	// MeteredPrice, if set, is a metered Stripe price on the usage meter the
	// Reporter feeds (usage_type metered, typically graduated tiers that price the
	// overage). Service.Checkout adds it to the subscription beside Prices[0],
	// without a quantity, so that the usage reported is billed. It grants nothing
	// by itself and belongs to no plan's Prices; plans may share it.
	MeteredPrice string
	// Features are Stripe feature lookup keys: a customer whose active entitlement
	// summary (entitlements.active_entitlement_summary.updated) lists one of them
	// gets this plan, as a subscription to one of its prices would give it. A
	// lookup key belongs to at most one plan.
	Features []string
}

// Catalog maps plan names to plans. It is the one place plan data lives: the
// gate reads ranks and rates from it, and the Service limits and prices. A Catalog is
// a plain map and its methods do not lock: build it once, Validate it, and do not
// change it while others read it (a Service keeps a copy of its own). The nil
// Catalog is empty.
type Catalog map[string]Plan

// planName is what Validate accepts as a plan name.
var planName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate reports the first problem it finds with the catalog, or nil: a name
// that is not [A-Za-z0-9_.-]+ or differs from the plan's Name, a negative rank
// or monthly call limit, an empty price ID or feature, a price or feature in two
// plans, a metered price that is also a plan's price, or prices, a metered price
// or features on a plan without a monthly call limit. An empty catalog is valid
// (and sells nothing).
func (c Catalog) Validate() error {
	seen := make(map[string]string)     // price → plan
	features := make(map[string]string) // lookup key → plan
	for _, name := range c.Names() {
		p := c[name]
		switch {
		case !planName.MatchString(name):
			return fmt.Errorf("entitlement: plan name %q: use letters, digits, '_', '.' and '-'", name)
		case p.Name != name:
			return fmt.Errorf("entitlement: plan %q has Name %q; they must be equal", name, p.Name)
		case p.Rank < 0:
			return fmt.Errorf("entitlement: plan %q has a negative rank", name)
		case p.MonthlyCallLimit < 0:
			return fmt.Errorf("entitlement: plan %q has a negative monthly call limit", name)
		case len(p.Prices) > 0 && p.MonthlyCallLimit == 0:
			return fmt.Errorf("entitlement: plan %q has prices but no monthly call limit", name)
		case len(p.Features) > 0 && p.MonthlyCallLimit == 0:
			return fmt.Errorf("entitlement: plan %q has features but no monthly call limit", name)
		case p.MeteredPrice != "" && len(p.Prices) == 0:
			return fmt.Errorf("entitlement: plan %q has a metered price but no price to sell it with", name)
		}
		for _, key := range p.Features {
			if key == "" {
				return fmt.Errorf("entitlement: plan %q has an empty feature lookup key", name)
			}
			if other, ok := features[key]; ok {
				return fmt.Errorf("entitlement: feature %q is in plans %q and %q", key, other, name)
			}
			features[key] = name
		}
		for _, price := range p.Prices {
			if price == "" {
				return fmt.Errorf("entitlement: plan %q has an empty price ID", name)
			}
			if other, ok := seen[price]; ok {
				return fmt.Errorf("entitlement: price %q is in plans %q and %q", price, other, name)
			}
			seen[price] = name
		}
	}
	for _, name := range c.Names() {
		if m := c[name].MeteredPrice; m != "" {
			if other, ok := seen[m]; ok {
				return fmt.Errorf("entitlement: metered price %q of plan %q is a price of plan %q; a metered price grants nothing", m, name, other)
			}
		}
	}
	return nil
}

// Rank returns the plan's rank, or -1 for an unknown plan, which no gated route
// admits.
func (c Catalog) Rank(plan string) int {
	if p, ok := c[plan]; ok {
		return p.Rank
	}
	return -1
}

// Lookup returns the named plan, or an error wrapping ErrUnknownPlan that names
// it.
func (c Catalog) Lookup(name string) (Plan, error) {
	p, ok := c[name]
	if !ok {
		return Plan{}, fmt.Errorf("%w %q", ErrUnknownPlan, name)
	}
	return p, nil
}

// PlanForPrice returns the name of the plan whose Prices hold priceID, and false
// when no plan does.
func (c Catalog) PlanForPrice(priceID string) (string, bool) {
	for name, p := range c {
		if slices.Contains(p.Prices, priceID) {
			return name, true
		}
	}
	return "", false
}

// PlanForFeature returns the name of the plan whose Features hold the Stripe
// feature lookup key, and false when no plan does.
func (c Catalog) PlanForFeature(lookupKey string) (string, bool) {
	for name, p := range c {
		if slices.Contains(p.Features, lookupKey) {
			return name, true
		}
	}
	return "", false
}

// Rates returns each plan's burst rate, keyed by plan name.
func (c Catalog) Rates() map[string]string {
	m := make(map[string]string, len(c))
	for name, p := range c {
		m[name] = p.Rate
	}
	return m
}

// Names returns the plan names in rank order, lowest first; plans of equal rank
// in name order.
func (c Catalog) Names() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := c[names[i]].Rank, c[names[j]].Rank
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	return names
}

// clone returns a deep copy of c, so a Service does not see later edits.
func (c Catalog) clone() Catalog {
	out := make(Catalog, len(c))
	for name, p := range c {
		p.Prices = slices.Clone(p.Prices)
		p.Features = slices.Clone(p.Features)
		out[name] = p
	}
	return out
}
