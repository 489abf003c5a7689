package ratelimit_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/ratelimit"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want ratelimit.Rate
		str  string
	}{
		{"20-M", ratelimit.Rate{Limit: 20, Period: time.Minute}, "20-M"},
		{"5-s", ratelimit.Rate{Limit: 5, Period: time.Second}, "5-S"},
		{"1-H", ratelimit.Rate{Limit: 1, Period: time.Hour}, "1-H"},
		{"1000-D", ratelimit.Rate{Limit: 1000, Period: 24 * time.Hour}, "1000-D"},
		{"9223372036854775807-S", ratelimit.Rate{Limit: 1<<63 - 1, Period: time.Second}, "9223372036854775807-S"},
	} {
		got, err := ratelimit.ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.str {
			t.Errorf("%+v.String() = %q, want %q", got, s, tc.str)
		}
		if again, err := ratelimit.ParseRate(got.String()); err != nil || again != got {
			t.Errorf("ParseRate(String()) = %+v, %v; want %+v", again, err, got)
		}
	}
	for _, in := range []string{"", "20", "20-", "-M", "20-W", "x-M", "0-M", "-5-M", "20-M-S", " 20-M", "20 -M", "1.5-M", "99999999999999999999-S"} {
		got, err := ratelimit.ParseRate(in)
		if err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", in, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), "ratelimit: rate ") || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseRate(%q) error %q does not name the input", in, err)
		}
	}
}

func TestRateString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    ratelimit.Rate
		want string
	}{
		{ratelimit.Rate{Limit: 5, Period: 2 * time.Second}, "5/2s"},
		{ratelimit.Rate{Limit: 5, Period: 1500 * time.Millisecond}, "5/1.5s"},
		{ratelimit.Rate{}, "0/0s"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestParseRates(t *testing.T) {
	t.Parallel()
	m := func(l int64) ratelimit.Rate { return ratelimit.Rate{Limit: l, Period: time.Minute} }
	good := []struct {
		in   string
		want map[string]ratelimit.Rate
	}{
		{"", map[string]ratelimit.Rate{}},
		{" , ", map[string]ratelimit.Rate{}},
		{"gold=100-M", map[string]ratelimit.Rate{"gold": m(100)}},
		{" free=20-M , gold=100-M,Plat.v2_x-1=500-M ,", map[string]ratelimit.Rate{"free": m(20), "gold": m(100), "Plat.v2_x-1": m(500)}},
		{"fast=10-S", map[string]ratelimit.Rate{"fast": {Limit: 10, Period: time.Second}}},
		{"gold=5-h", map[string]ratelimit.Rate{"gold": {Limit: 5, Period: time.Hour}}},
	}
	for _, tc := range good {
		got, err := ratelimit.ParseRates(tc.in)
		if err != nil {
			t.Errorf("ParseRates(%q): %v", tc.in, err)
			continue
		}
		if got == nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseRates(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	bad := []struct{ in, names string }{
		{"gold", `"gold"`},
		{"gold=", `"gold="`},
		{"=100-M", `"=100-M"`},
		{"free=20-M,gold=100", `"gold=100"`},
		{"gold=100-W", `"gold=100-W"`},
		{"gold=x-M", `"gold=x-M"`},
		{"gold=0-M", `"gold=0-M"`},
		{"gold=-5-M", `"gold=-5-M"`},
		{"gold=1-M,gold=2-M", `appears twice`},
		{"go ld=1-M", `"go ld=1-M"`},
		{`go"ld=1-M`, `go\"ld=1-M`},
		{"a:b=1-M", `"a:b=1-M"`},
		{"gold=1-M=2", `"gold=1-M=2"`},
	}
	for _, tc := range bad {
		got, err := ratelimit.ParseRates(tc.in)
		if err == nil {
			t.Errorf("ParseRates(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), "ratelimit: rate entry ") || strings.Count(err.Error(), "ratelimit:") != 1 || !strings.Contains(err.Error(), tc.names) {
			t.Errorf("ParseRates(%q) error %q does not name %s once", tc.in, err, tc.names)
		}
	}
}

func TestPolicyHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    ratelimit.Rate
		want string
	}{
		{"gold", ratelimit.Rate{Limit: 100, Period: time.Minute}, `"gold";q=100;w=60`},
		{"free", ratelimit.Rate{Limit: 20, Period: time.Second}, `"free";q=20;w=1`},
		{"daily", ratelimit.Rate{Limit: 1000, Period: 24 * time.Hour}, `"daily";q=1000;w=86400`},
		{`od"d`, ratelimit.Rate{Limit: 1, Period: time.Minute}, `"od\"d";q=1;w=60`},
	} {
		if got := ratelimit.PolicyHeader(tc.name, tc.r); got != tc.want {
			t.Errorf("PolicyHeader(%q, %v) = %s, want %s", tc.name, tc.r, got, tc.want)
		}
	}
}
