package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/ratelimit"
)

// setting is one environment variable of docs/API.md and the flag that mirrors it.
type setting struct {
	env, flag, def, usage string
}

// settings lists every variable the server reads, in the order of the README
// table; the plan-specific ones follow the catalog.
var settings = func() []setting {
	c := defaultCatalog()
	list := []setting{
		{"RR_ADDR", "addr", "127.0.0.1:8501", "API listen address"},
		{"RR_ADMIN_ADDR", "admin-addr", "127.0.0.1:9464", "listener for /metrics, /healthz and /readyz"},
		{"RR_DATABASE_URL", "database-url", "sqlite:releaseradar.db", "sqlite:PATH or postgres://…"},
		{"RR_REDIS_URL", "redis-url", "", "redis://… to share burst-limit counters between replicas"},
		{"RR_REDIS_PREFIX", "redis-prefix", "rr:rl", "prefix of the Redis keys the burst limiter writes"},
		{"RR_PLAN_RATES", "plan-rates", "", "burst limits, such as " + ratesExample(c)},
		{"RR_CORS_ORIGINS", "cors-origins", "", "comma-separated origins allowed by CORS"},
		{"RR_TRUSTED_PROXIES", "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed"},
		{"RR_STRIPE_WEBHOOK_SECRET", "stripe-webhook-secret", "", "whsec_… that verifies /billing/webhook"},
	}
	for _, plan := range paidPlans(c) {
		env := priceSetting(plan)
		list = append(list, setting{env, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(env, "RR_"), "_", "-")), "",
			"comma-separated Stripe price IDs that grant " + plan})
	}
	return append(list,
		setting{"RR_STRIPE_API_KEY", "stripe-api-key", "", "sk_… or rk_… key: re-reads subscriptions, starts Checkout and Customer Portal sessions, sends meter events"},
		setting{"RR_STRIPE_LIVEMODE", "stripe-livemode", "false", "true to accept live-mode events instead of test-mode ones"},
		setting{"RR_STRIPE_API_BASE", "stripe-api-base", "", "base URL of the Stripe API (default Stripe's own, https://api.stripe.com; tests point it at stripe-mock)"},
		setting{"RR_STRIPE_METER_EVENT", "stripe-meter-event", "", "event name of the Stripe Billing Meter the calls served are reported to (with RR_STRIPE_API_KEY)"},
		setting{"RR_STRIPE_METERED_PRICE", "stripe-metered-price", "", "a metered Stripe price on that meter (price_…) that Checkout adds to the subscription of every plan it sells, so the usage reported is billed (overage tiers)"},
		setting{"RR_STRIPE_METER_INTERVAL", "stripe-meter-interval", "30s", "how often closed minutes of usage are reported to the meter (Go duration)"},
		setting{"RR_STRIPE_METER_GRACE", "stripe-meter-grace", "1m", "how long after a minute ends its usage is reported, so late writes make it (Go duration, at least 1s)"},
		setting{"RR_PUBLIC_URL", "public-url", "", "the server's public base URL, for Checkout's and the Customer Portal's return links (default http:// and RR_ADDR)"},
		setting{"RR_ROTATE_GRACE", "rotate-grace", "0s", "how long a key replaced by a Stripe plan change keeps working (Go duration, at most 168h; 0 revokes it at once)"},
		setting{"RR_SESSION_SECRET", "session-secret", "", "HMAC secret of dashboard tokens (at least 32 bytes); generated once and kept in the database when unset"},
		setting{"RR_LOG_FORMAT", "log-format", "text", "text or json"},
		setting{"RR_REQUEST_TIMEOUT", "request-timeout", "10s", "how long a request may wait on the database or Redis before it is answered 503 (Go duration)"},
		setting{"RR_CACHE_TTL", "cache-ttl", "5s", "how long a repeated event lookup or search is answered from memory (Go duration; 0 turns it off)"},
	)
}()

// config is the server's validated configuration.
type config struct {
	Addr, AdminAddr string
	DatabaseURL     string
	RedisURL        string
	RedisPrefix     string
	// Catalog is the plans with their burst rates overridden by RR_PLAN_RATES and
	// their Stripe prices from the RR_STRIPE_PRICE_* settings.
	Catalog        entitlement.Catalog
	CORSOrigins    []string
	TrustedProxies []netip.Prefix
	WebhookSecret  string
	StripeAPIKey   string
	Livemode       bool
	// StripeAPIBase is the base URL of the Stripe API; "" means Stripe's own.
	StripeAPIBase string
	// MeterEvent is the Billing Meter's event name; "" reports no usage.
	MeterEvent string
	// MeterInterval and MeterGrace time the meter reporter's passes.
	MeterInterval, MeterGrace time.Duration
	// PublicURL is the server's public base URL, without a trailing slash.
	PublicURL string
	// RotateGrace is how long a key replaced by a Stripe plan change keeps working.
	RotateGrace   time.Duration
	SessionSecret []byte // nil: kept in the database
	LogFormat     string
	// RequestTimeout bounds the time a request may spend waiting on dependencies.
	RequestTimeout time.Duration
	// CacheTTL is how long the market's answers are reused; 0 means never.
	CacheTTL time.Duration
}

// settingError names the variable whose value is wrong.
type settingError struct {
	env string
	err error
}

func (e *settingError) Error() string { return e.env + ": " + e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// loadConfig reads every setting through lookup (the environment, overridden by
// flags) and validates it. The error names the first bad variable.
func loadConfig(lookup func(env string) string) (config, error) {
	get := func(env string) string {
		v := strings.TrimSpace(lookup(env))
		if v == "" {
			for _, s := range settings {
				if s.env == env {
					return s.def
				}
			}
		}
		return v
	}
	bad := func(env string, format string, args ...any) error {
		return &settingError{env: env, err: fmt.Errorf(format, args...)}
	}
	c := config{
		Addr:          get("RR_ADDR"),
		AdminAddr:     get("RR_ADMIN_ADDR"),
		DatabaseURL:   get("RR_DATABASE_URL"),
		RedisURL:      get("RR_REDIS_URL"),
		RedisPrefix:   get("RR_REDIS_PREFIX"),
		WebhookSecret: get("RR_STRIPE_WEBHOOK_SECRET"),
		StripeAPIKey:  get("RR_STRIPE_API_KEY"),
		StripeAPIBase: strings.TrimSuffix(get("RR_STRIPE_API_BASE"), "/"),
		MeterEvent:    get("RR_STRIPE_METER_EVENT"),
		PublicURL:     strings.TrimSuffix(get("RR_PUBLIC_URL"), "/"),
		LogFormat:     get("RR_LOG_FORMAT"),
	}
	for _, env := range []string{"RR_ADDR", "RR_ADMIN_ADDR"} {
		if err := validAddr(get(env)); err != nil {
			return config{}, bad(env, "%v", err)
		}
	}
	if _, err := parseDatabaseURL(c.DatabaseURL); err != nil {
		return config{}, &settingError{env: "RR_DATABASE_URL", err: err}
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			return config{}, bad("RR_REDIS_URL", "want redis://HOST:PORT/DB or rediss://…")
		}
	}

	c.Catalog = defaultCatalog()
	overrides, err := ratelimit.ParseRates(get("RR_PLAN_RATES"))
	if err != nil {
		return config{}, &settingError{env: "RR_PLAN_RATES", err: err}
	}
	for name, rate := range overrides {
		p, ok := c.Catalog[name]
		if !ok {
			return config{}, bad("RR_PLAN_RATES", "no plan %q; the plans are %s", name, strings.Join(c.Catalog.Names(), ", "))
		}
		p.Rate = rate.String()
		c.Catalog[name] = p
	}

	for o := range strings.SplitSeq(get("RR_CORS_ORIGINS"), ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return config{}, bad("RR_CORS_ORIGINS", "%q is not an origin such as https://app.example.com", o)
		}
		c.CORSOrigins = append(c.CORSOrigins, strings.TrimSuffix(o, "/"))
	}

	for p := range strings.SplitSeq(get("RR_TRUSTED_PROXIES"), ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return config{}, bad("RR_TRUSTED_PROXIES", "%q is not a CIDR such as 10.0.0.0/8", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, prefix.Masked())
	}

	if c.WebhookSecret != "" && !strings.HasPrefix(c.WebhookSecret, "whsec_") {
		return config{}, bad("RR_STRIPE_WEBHOOK_SECRET", "want a signing secret starting with whsec_")
	}
	if c.StripeAPIKey != "" && !strings.HasPrefix(c.StripeAPIKey, "sk_") && !strings.HasPrefix(c.StripeAPIKey, "rk_") {
		return config{}, bad("RR_STRIPE_API_KEY", "want a secret or restricted key starting with sk_ or rk_")
	}
	granted := make(map[string]string) // price → plan
	for _, plan := range paidPlans(c.Catalog) {
		env := priceSetting(plan)
		p := c.Catalog[plan]
		for id := range strings.SplitSeq(get(env), ",") {
			id = strings.TrimSpace(id)
			if id == "" {
				continue
			}
			if other, dup := granted[id]; dup && other != plan {
				return config{}, bad(env, "price %q already grants %s", id, other)
			}
			granted[id] = plan
			p.Prices = append(p.Prices, id)
		}
		c.Catalog[plan] = p
	}
	if m := strings.TrimSpace(get("RR_STRIPE_METERED_PRICE")); m != "" {
		if !strings.HasPrefix(m, "price_") || strings.ContainsAny(m, ", ") {
			return config{}, bad("RR_STRIPE_METERED_PRICE", "want one Stripe price ID starting with price_")
		}
		if plan, dup := granted[m]; dup {
			return config{}, bad("RR_STRIPE_METERED_PRICE", "price %q already grants %s; the metered price bills usage beside it", m, plan)
		}
		for _, plan := range paidPlans(c.Catalog) {
			if p := c.Catalog[plan]; len(p.Prices) > 0 { // a plan Checkout sells
				p.MeteredPrice = m
				c.Catalog[plan] = p
			}
		}
	}
	if err := c.Catalog.Validate(); err != nil {
		return config{}, bad("RR_PLAN_RATES", "%v", err)
	}
	switch strings.ToLower(get("RR_STRIPE_LIVEMODE")) {
	case "true", "1", "yes":
		c.Livemode = true
	case "false", "0", "no":
	default:
		return config{}, bad("RR_STRIPE_LIVEMODE", "want true or false")
	}

	if s := get("RR_SESSION_SECRET"); s != "" {
		if len(s) < session.MinSecretLen {
			return config{}, bad("RR_SESSION_SECRET", "must be at least %d bytes long", session.MinSecretLen)
		}
		c.SessionSecret = []byte(s)
	}
	if d, err := time.ParseDuration(get("RR_REQUEST_TIMEOUT")); err != nil || d <= 0 {
		return config{}, bad("RR_REQUEST_TIMEOUT", "want a positive Go duration such as 10s")
	} else {
		c.RequestTimeout = d
	}
	if d, err := time.ParseDuration(get("RR_CACHE_TTL")); err != nil || d < 0 {
		return config{}, bad("RR_CACHE_TTL", "want a Go duration such as 5s, or 0 for no cache")
	} else {
		c.CacheTTL = d
	}
	if c.StripeAPIBase != "" && !absoluteURL(c.StripeAPIBase) {
		return config{}, bad("RR_STRIPE_API_BASE", "want an absolute http(s) URL such as https://api.stripe.com")
	}
	if c.MeterEvent != "" && !meterEventName.MatchString(c.MeterEvent) {
		return config{}, bad("RR_STRIPE_METER_EVENT", "want a meter's event name: 1 to 100 letters, digits, '_', '-' or '.'")
	}
	if d, err := time.ParseDuration(get("RR_STRIPE_METER_INTERVAL")); err != nil || d < time.Second {
		return config{}, bad("RR_STRIPE_METER_INTERVAL", "want a Go duration of at least 1s, such as 30s")
	} else {
		c.MeterInterval = d
	}
	if d, err := time.ParseDuration(get("RR_STRIPE_METER_GRACE")); err != nil || d < time.Second {
		return config{}, bad("RR_STRIPE_METER_GRACE", "want a Go duration of at least 1s, such as 1m")
	} else {
		c.MeterGrace = d
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
	} else if !absoluteURL(c.PublicURL) {
		return config{}, bad("RR_PUBLIC_URL", "want an absolute http(s) URL without query, such as https://api.example.com")
	}
	if d, err := time.ParseDuration(get("RR_ROTATE_GRACE")); err != nil || d < 0 || d > maxRotateGrace {
		return config{}, bad("RR_ROTATE_GRACE", "want a Go duration from 0 to 168h, such as 1h")
	} else {
		c.RotateGrace = d
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return config{}, bad("RR_LOG_FORMAT", "want text or json, not %q", c.LogFormat)
	}
	return c, nil
}

// maxRotateGrace is the longest RR_ROTATE_GRACE: the longest grace a rotation
// takes (tollgate.MaxGrace).
const maxRotateGrace = tollgate.MaxGrace

// meterEventName is what Stripe accepts as a Billing Meter's event name.
var meterEventName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)

// absoluteURL reports whether s is an absolute http(s) URL with a host and
// neither query nor fragment.
func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
}

// validAddr accepts HOST:PORT with a numeric port (0 picks a free one).
func validAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT, such as 127.0.0.1:8501", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}

// flagLookup registers one flag per setting on fs and returns a lookup that
// prefers a flag given on the command line over the environment.
func flagLookup(fs *flag.FlagSet, getenv func(string) string) func(string) string {
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		usage := s.usage + " (" + s.env
		if s.def != "" {
			usage += ", default " + s.def
		}
		values[s.env] = fs.String(s.flag, "", usage+")")
	}
	return func(env string) string {
		if v, ok := values[env]; ok && *v != "" {
			return *v
		}
		return getenv(env)
	}
}
