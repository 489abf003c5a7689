package main

import (
	"strings"

	"github.com/releaseradar/tollgate/entitlement"
)

// ReleaseRadar's plans. This file is the one place their names and numbers are
// written: routes, settings, the admin commands, the schema's defaults and the
// dashboard read them from the catalog.
const (
	planPublic = "public" // anonymous callers, by client address
	planPro    = "pro"
	planTeam   = "team"
)

// defaultCatalog returns the plans before RR_PLAN_RATES and the RR_STRIPE_PRICE_*
// settings are applied.
func defaultCatalog() entitlement.Catalog {
	return entitlement.Catalog{
		planPublic: {Name: planPublic, Rank: 0, Rate: "30-M"},
		planPro:    {Name: planPro, Rank: 1, MonthlyCallLimit: 10_000, Rate: "600-M"},
		planTeam:   {Name: planTeam, Rank: 2, MonthlyCallLimit: 100_000, Rate: "3000-M"},
	}
}

// legacyPlan is the plan that keys of an older api_keys table, created before the
// table had plan and limit columns, are given by the schema bootstrap.
const legacyPlan = planPro

// paidPlans returns the names of the plans a key can be issued on, by rank.
func paidPlans(c entitlement.Catalog) []string {
	var out []string
	for _, name := range c.Names() {
		if c[name].MonthlyCallLimit > 0 {
			out = append(out, name)
		}
	}
	return out
}

// priceSetting returns the variable that lists the Stripe prices of a plan:
// RR_STRIPE_PRICE_PRO for pro.
func priceSetting(plan string) string { return "RR_STRIPE_PRICE_" + strings.ToUpper(plan) }

// ratesExample is the catalog's burst rates as RR_PLAN_RATES would spell them.
func ratesExample(c entitlement.Catalog) string {
	parts := make([]string, 0, len(c))
	for _, name := range c.Names() {
		parts = append(parts, name+"="+c[name].Rate)
	}
	return strings.Join(parts, ",")
}
