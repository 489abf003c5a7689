package entitlement_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/releaseradar/tollgate/entitlement"
)

func TestCatalogValidate(t *testing.T) {
	t.Parallel()
	if err := testCatalog().Validate(); err != nil {
		t.Fatalf("the tests' catalog: %v", err)
	}
	if err := (entitlement.Catalog{}).Validate(); err != nil {
		t.Fatalf("an empty catalog: %v", err)
	}
	tests := []struct {
		name string
		edit func(entitlement.Catalog)
		want string
	}{
		{"bad name", func(c entitlement.Catalog) { c["a b"] = entitlement.Plan{Name: "a b"} }, "plan name"},
		{"name differs from key", func(c entitlement.Catalog) { c["x"] = entitlement.Plan{Name: "y"} }, "must be equal"},
		{"negative rank", func(c entitlement.Catalog) { c["x"] = entitlement.Plan{Name: "x", Rank: -1} }, "negative rank"},
		{"negative limit", func(c entitlement.Catalog) { c["x"] = entitlement.Plan{Name: "x", MonthlyCallLimit: -1} }, "negative monthly"},
		{"price without a limit", func(c entitlement.Catalog) { c["x"] = entitlement.Plan{Name: "x", Prices: []string{"price_x"}} }, "no monthly call limit"},
		{"empty price", func(c entitlement.Catalog) {
			c["x"] = entitlement.Plan{Name: "x", MonthlyCallLimit: 1, Prices: []string{""}}
		}, "empty price"},
		{"price in two plans", func(c entitlement.Catalog) {
			c["x"] = entitlement.Plan{Name: "x", Rank: 3, MonthlyCallLimit: 1, Prices: []string{priceGold}}
		}, "is in plans"},
		{"features without a limit", func(c entitlement.Catalog) { c["x"] = entitlement.Plan{Name: "x", Features: []string{"f"}} }, "features but no monthly"},
		{"empty feature", func(c entitlement.Catalog) {
			c["x"] = entitlement.Plan{Name: "x", MonthlyCallLimit: 1, Features: []string{""}}
		}, "empty feature"},
		{"feature in two plans", func(c entitlement.Catalog) {
			c["x"] = entitlement.Plan{Name: "x", MonthlyCallLimit: 1, Features: []string{"f"}}
			c["y"] = entitlement.Plan{Name: "y", MonthlyCallLimit: 1, Features: []string{"f"}}
		}, "feature \"f\" is in plans"},
		{"metered price without a price", func(c entitlement.Catalog) {
			c["x"] = entitlement.Plan{Name: "x", MonthlyCallLimit: 1, MeteredPrice: "price_m"}
		}, "metered price but no price"},
		{"metered price that grants", func(c entitlement.Catalog) {
			gold := c[planGold]
			gold.MeteredPrice = pricePlatinum
			c[planGold] = gold
		}, "a metered price grants nothing"},
	}
	for _, tt := range tests {
		c := testCatalog()
		tt.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestCatalogLookups(t *testing.T) {
	t.Parallel()
	c := testCatalog()
	if got, want := c.Names(), []string{planFree, planGold, planPlatinum}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	c["aaa"] = entitlement.Plan{Name: "aaa", Rank: 1}
	if got, want := c.Names(), []string{planFree, "aaa", planGold, planPlatinum}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names with a tie = %v, want %v (equal ranks in name order)", got, want)
	}
	if c.Rank(planPlatinum) != 2 || c.Rank("nope") != -1 {
		t.Errorf("Rank(platinum) = %d, Rank(nope) = %d", c.Rank(planPlatinum), c.Rank("nope"))
	}
	if p, err := c.Lookup(planGold); err != nil || p.MonthlyCallLimit != goldLimit {
		t.Errorf("Lookup(gold) = %+v, %v", p, err)
	}
	if _, err := c.Lookup("nope"); !errors.Is(err, entitlement.ErrUnknownPlan) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Lookup(nope) = %v, want ErrUnknownPlan naming it", err)
	}
	if plan, ok := c.PlanForPrice(pricePlatinum); !ok || plan != planPlatinum {
		t.Errorf("PlanForPrice(platinum's price) = %q, %v", plan, ok)
	}
	if plan, ok := c.PlanForPrice(priceUnknown); ok {
		t.Errorf("PlanForPrice(unknown) = %q, true", plan)
	}
	gold := c[planGold]
	gold.Features, gold.MeteredPrice = []string{"gold-api"}, "price_metered"
	c[planGold] = gold
	p2 := c[planPlatinum]
	p2.MeteredPrice = "price_metered" // plans may share a metered price
	c[planPlatinum] = p2
	if err := c.Validate(); err != nil {
		t.Errorf("a catalog with features and a shared metered price: %v", err)
	}
	if plan, ok := c.PlanForFeature("gold-api"); !ok || plan != planGold {
		t.Errorf("PlanForFeature(gold-api) = %q, %v", plan, ok)
	}
	if plan, ok := c.PlanForFeature("nope"); ok {
		t.Errorf("PlanForFeature(nope) = %q, true", plan)
	}
	if plan, ok := c.PlanForPrice("price_metered"); ok {
		t.Errorf("PlanForPrice(a metered price) = %q, true; a metered price grants nothing", plan)
	}
	if r := c.Rates(); r[planGold] != "100-M" || r["aaa"] != "" || len(r) != len(c) {
		t.Errorf("Rates = %v", r)
	}
}
