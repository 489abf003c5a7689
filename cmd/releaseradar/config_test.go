package main

import (
	"flag"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf())
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8501" || c.AdminAddr != "127.0.0.1:9464" || c.DatabaseURL != "sqlite:releaseradar.db" {
		t.Errorf("addresses = %q %q %q", c.Addr, c.AdminAddr, c.DatabaseURL)
	}
	if !reflect.DeepEqual(c.Catalog, defaultCatalog()) {
		t.Errorf("Catalog = %v, want the default %v", c.Catalog, defaultCatalog())
	}
	if c.RedisURL != "" || len(c.CORSOrigins) != 0 || len(c.TrustedProxies) != 0 || c.SessionSecret != nil || c.LogFormat != "text" || c.Livemode {
		t.Errorf("unexpected non-default: %+v", c)
	}
}

func TestConfigValues(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf(
		"RR_PLAN_RATES", " pro=20-M ",
		"RR_CORS_ORIGINS", "https://app.example.com, http://localhost:3000/",
		"RR_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7",
		"RR_STRIPE_PRICE_PRO", "price_a,price_b",
		"RR_STRIPE_PRICE_TEAM", "price_c",
		"RR_STRIPE_WEBHOOK_SECRET", "whsec_x",
		"RR_SESSION_SECRET", strings.Repeat("s", 32),
		"RR_DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db?search_path=x",
		"RR_REDIS_URL", "redis://127.0.0.1:6379/0",
		"RR_LOG_FORMAT", "json",
		"RR_STRIPE_LIVEMODE", "true",
	))
	if err != nil {
		t.Fatal(err)
	}
	def := defaultCatalog()
	if c.Catalog[planPro].Rate != "20-M" || c.Catalog[planTeam].Rate != def[planTeam].Rate || c.Catalog[planPublic].Rate != def[planPublic].Rate {
		t.Errorf("Catalog = %v", c.Catalog)
	}
	if want := []string{"https://app.example.com", "http://localhost:3000"}; !reflect.DeepEqual(c.CORSOrigins, want) {
		t.Errorf("CORSOrigins = %v, want %v", c.CORSOrigins, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}; !reflect.DeepEqual(c.TrustedProxies, want) {
		t.Errorf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
	}
	if !reflect.DeepEqual(c.Catalog[planPro].Prices, []string{"price_a", "price_b"}) || !reflect.DeepEqual(c.Catalog[planTeam].Prices, []string{"price_c"}) {
		t.Errorf("Catalog prices = %v, %v", c.Catalog[planPro].Prices, c.Catalog[planTeam].Prices)
	}
	if string(c.SessionSecret) != strings.Repeat("s", 32) || c.LogFormat != "json" || !c.Livemode {
		t.Errorf("config = %+v", c)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, value string }{
		{"RR_ADDR", "nonsense"},
		{"RR_ADDR", "127.0.0.1:http"},
		{"RR_ADMIN_ADDR", "127.0.0.1:70000"},
		{"RR_DATABASE_URL", "mysql://localhost/db"},
		{"RR_DATABASE_URL", "sqlite:"},
		{"RR_REDIS_URL", "http://127.0.0.1:6379"},
		{"RR_PLAN_RATES", "pro=fast"},
		{"RR_PLAN_RATES", "pro"},
		{"RR_PLAN_RATES", "pro=0-M"},
		{"RR_CORS_ORIGINS", "ftp://example.com"},
		{"RR_CORS_ORIGINS", "https://example.com/path"},
		{"RR_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"RR_TRUSTED_PROXIES", "not-an-ip"},
		{"RR_STRIPE_WEBHOOK_SECRET", "sk_test_123"},
		{"RR_STRIPE_LIVEMODE", "maybe"},
		{"RR_STRIPE_API_KEY", "pk_test_123"},
		{"RR_SESSION_SECRET", "too short"},
		{"RR_LOG_FORMAT", "xml"},
		{"RR_STRIPE_API_BASE", "localhost:12111"},
		{"RR_STRIPE_API_BASE", "ftp://stripe.example"},
		{"RR_STRIPE_METER_EVENT", "api calls"},
		{"RR_STRIPE_METER_EVENT", strings.Repeat("a", 101)},
		{"RR_STRIPE_METER_INTERVAL", "0s"},
		{"RR_STRIPE_METER_INTERVAL", "often"},
		{"RR_STRIPE_METER_GRACE", "500ms"},
		{"RR_PUBLIC_URL", "api.example.com"},
		{"RR_PUBLIC_URL", "https://api.example.com/?x=1"},
		{"RR_ROTATE_GRACE", "-1h"},
		{"RR_ROTATE_GRACE", "169h"},
		{"RR_ROTATE_GRACE", "a day"},
		{"RR_STRIPE_METERED_PRICE", "usage"},
		{"RR_STRIPE_METERED_PRICE", "price_a,price_b"},
	}
	for _, tc := range tests {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(envOf(tc.env, tc.value))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.env+": ") {
				t.Fatalf("error %q does not start with %s", err, tc.env)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q spans lines", err)
			}
		})
	}
}

func TestConfigBillingSettings(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf("RR_ADDR", "127.0.0.1:9000"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "http://127.0.0.1:9000" || c.StripeAPIBase != "" || c.MeterEvent != "" || c.MeterInterval != 30*time.Second || c.MeterGrace != time.Minute || c.RotateGrace != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(envOf(
		"RR_PUBLIC_URL", "https://api.example.com/",
		"RR_STRIPE_API_BASE", "http://127.0.0.1:12111/",
		"RR_STRIPE_METER_EVENT", "api_calls",
		"RR_STRIPE_METER_INTERVAL", "2s",
		"RR_STRIPE_METER_GRACE", "3s",
		"RR_ROTATE_GRACE", "24h",
	))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://api.example.com" || c.StripeAPIBase != "http://127.0.0.1:12111" || c.MeterEvent != "api_calls" ||
		c.MeterInterval != 2*time.Second || c.MeterGrace != 3*time.Second || c.RotateGrace != 24*time.Hour {
		t.Errorf("values: %+v", c)
	}
}

// The metered price is added to every plan for sale, and may not grant one.
func TestConfigMeteredPrice(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(envOf("RR_STRIPE_PRICE_PRO", "price_pro", "RR_STRIPE_METERED_PRICE", "price_overage"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Catalog[planPro].MeteredPrice; got != "price_overage" {
		t.Errorf("pro: metered price %q", got)
	}
	for _, plan := range []string{planTeam, planPublic} { // not for sale
		if got := c.Catalog[plan].MeteredPrice; got != "" {
			t.Errorf("%s: metered price %q", plan, got)
		}
	}
	_, err = loadConfig(envOf("RR_STRIPE_PRICE_PRO", "price_pro", "RR_STRIPE_METERED_PRICE", "price_pro"))
	if err == nil || !strings.HasPrefix(err.Error(), "RR_STRIPE_METERED_PRICE: ") {
		t.Fatalf("a metered price that grants pro: %v", err)
	}
}

func TestConfigPriceInTwoPlans(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(envOf("RR_STRIPE_PRICE_PRO", "price_x", "RR_STRIPE_PRICE_TEAM", "price_x"))
	if err == nil || !strings.HasPrefix(err.Error(), "RR_STRIPE_PRICE_TEAM: ") {
		t.Fatalf("err = %v, want one naming RR_STRIPE_PRICE_TEAM", err)
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lookup := flagLookup(fs, envOf("RR_ADDR", "127.0.0.1:1111", "RR_LOG_FORMAT", "json"))
	if err := fs.Parse([]string{"-addr", "127.0.0.1:2222"}); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2222" || c.LogFormat != "json" {
		t.Fatalf("Addr %q LogFormat %q: want the flag's address and the environment's format", c.Addr, c.LogFormat)
	}
}

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, driver, dsnPrefix string }{
		{"sqlite:releaseradar.db", "sqlite", "file:releaseradar.db?"},
		{"sqlite:/tmp/x.db", "sqlite", "file:/tmp/x.db?"},
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=tg_1", "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=tg_1"},
		{"postgresql://h/db", "postgres", "postgresql://h/db"},
	}
	for _, tc := range tests {
		got, err := parseDatabaseURL(tc.in)
		if err != nil || got.driver != tc.driver || !strings.HasPrefix(got.dsn, tc.dsnPrefix) {
			t.Errorf("parseDatabaseURL(%q) = %+v, %v", tc.in, got, err)
		}
	}
}
