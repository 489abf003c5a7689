package entitlement

import (
	"fmt"
	"sort"
)

// Plan is what a subscription buys: a rank for route gating, a monthly call limit
// for the quota and a burst rate (ulule's format, "600-M") for the rate limiter.
type Plan struct {
	Name             string
	Rank             int
	MonthlyCallLimit int64
	Rate             string
}

// Plan names.
const (
	Public = "public"
	Pro    = "pro"
	Team   = "team"
)

// Catalog maps plan names to plans. It is the one source of plan data: cmd builds
// apikey's rank function, quota limits and ratelimit's rate table from it.
type Catalog map[string]Plan

// DefaultCatalog is the project's plans: public (anonymous), pro and team.
func DefaultCatalog() Catalog {
	return Catalog{
		Public: {Name: Public, Rank: 0, MonthlyCallLimit: 0, Rate: "30-M"},
		Pro:    {Name: Pro, Rank: 1, MonthlyCallLimit: 10_000, Rate: "600-M"},
		Team:   {Name: Team, Rank: 2, MonthlyCallLimit: 100_000, Rate: "3000-M"},
	}
}

// Rank returns the plan's rank, or -1 for an unknown plan, which no gated route
// admits.
func (c Catalog) Rank(plan string) int {
	if p, ok := c[plan]; ok {
		return p.Rank
	}
	return -1
}

// Lookup returns the named plan, or an error naming it.
func (c Catalog) Lookup(name string) (Plan, error) {
	p, ok := c[name]
	if !ok {
		return Plan{}, fmt.Errorf("entitlement: unknown plan %q", name)
	}
	return p, nil
}

// Rates returns each plan's burst rate, keyed by plan name, for ratelimit.
func (c Catalog) Rates() map[string]string {
	m := make(map[string]string, len(c))
	for name, p := range c {
		m[name] = p.Rate
	}
	return m
}

// Names returns the plan names in rank order.
func (c Catalog) Names() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return c[names[i]].Rank < c[names[j]].Rank })
	return names
}
