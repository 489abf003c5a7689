package ratelimit

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/ulule/limiter/v3"
)

// DefaultRates are the burst limits of the known plans, in ulule's format
// ("<limit>-<S|M|H|D>", a number of requests per second, minute, hour or day).
// Config.Rates is merged over them.
var DefaultRates = map[string]string{
	"public": "30-M",
	"pro":    "600-M",
	"team":   "3000-M",
}

// DefaultRate is the burst limit of a plan that has no rate of its own.
const DefaultRate = "60-M"

// defaultPolicy names the policy of plans without a rate of their own, in headers,
// bucket names and metric labels.
const defaultPolicy = "default"

// ParseRates parses a plan rate list such as "public=30-M,pro=600-M" (the format of
// RR_PLAN_RATES). Any subset of plans may appear; spaces around entries are
// ignored and an empty string gives an empty map. The error names the bad entry.
func ParseRates(s string) (map[string]string, error) {
	rates := make(map[string]string)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		plan, formatted, ok := strings.Cut(entry, "=")
		plan, formatted = strings.TrimSpace(plan), strings.TrimSpace(formatted)
		if !ok || plan == "" || formatted == "" {
			return nil, fmt.Errorf("ratelimit: rate entry %q: want plan=rate, for example pro=600-M", entry)
		}
		if err := validPlanName(plan); err != nil {
			return nil, fmt.Errorf("ratelimit: rate entry %q: %w", entry, err)
		}
		if _, dup := rates[plan]; dup {
			return nil, fmt.Errorf("ratelimit: rate entry %q: plan %q appears twice", entry, plan)
		}
		if _, err := parseRate(formatted); err != nil {
			return nil, fmt.Errorf("ratelimit: rate entry %q: %w", entry, err)
		}
		rates[plan] = formatted
	}
	return rates, nil
}

// parseRate parses one ulule formatted rate and rejects limits below 1, which
// would refuse every request.
func parseRate(formatted string) (limiter.Rate, error) {
	rate, err := limiter.NewRateFromFormatted(formatted)
	if err != nil {
		return limiter.Rate{}, fmt.Errorf("rate %q: want <limit>-<S|M|H|D>, for example 600-M: %v", formatted, err)
	}
	if rate.Limit < 1 {
		return limiter.Rate{}, fmt.Errorf("rate %q: the limit must be at least 1", formatted)
	}
	return rate, nil
}

// validPlanName accepts names made of letters, digits, '_', '-' and '.', which are
// safe in bucket names, header parameters and metric labels.
func validPlanName(plan string) error {
	if plan == "" {
		return fmt.Errorf("empty plan name")
	}
	for _, c := range plan {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("plan name %q: use letters, digits, '_', '-' or '.'", plan)
		}
	}
	return nil
}

// policy is one plan's rate with its header values computed once.
type policy struct {
	name   string // plan name, or defaultPolicy
	rate   limiter.Rate
	limit  string // X-RateLimit-Limit
	header string // RateLimit-Policy
	prefix string // `"name";r=` of the RateLimit header
	// counters are set by the Limiter that owns the policy.
	counters counters
}

func newPolicy(name string, rate limiter.Rate) *policy {
	return &policy{
		name:   name,
		rate:   rate,
		limit:  strconv.FormatInt(rate.Limit, 10),
		header: fmt.Sprintf("%q;q=%d;w=%d", name, rate.Limit, int64(rate.Period.Seconds())),
		prefix: strconv.Quote(name) + ";r=",
	}
}

// policies builds the plan table: DefaultRates, overridden by rates, plus the
// policy of any other plan.
func policies(rates map[string]string, fallback string) (map[string]*policy, *policy, error) {
	merged := maps.Clone(DefaultRates)
	maps.Copy(merged, rates)
	table := make(map[string]*policy, len(merged))
	for plan, formatted := range merged {
		if err := validPlanName(plan); err != nil {
			return nil, nil, fmt.Errorf("ratelimit: Config.Rates: %w", err)
		}
		if plan == defaultPolicy {
			return nil, nil, fmt.Errorf("ratelimit: Config.Rates: plan name %q is reserved; set Config.DefaultRate", plan)
		}
		rate, err := parseRate(formatted)
		if err != nil {
			return nil, nil, fmt.Errorf("ratelimit: Config.Rates[%q]: %w", plan, err)
		}
		table[plan] = newPolicy(plan, rate)
	}
	if fallback == "" {
		fallback = DefaultRate
	}
	rate, err := parseRate(fallback)
	if err != nil {
		return nil, nil, fmt.Errorf("ratelimit: Config.DefaultRate: %w", err)
	}
	return table, newPolicy(defaultPolicy, rate), nil
}
