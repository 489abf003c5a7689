package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/releaseradar/tollgate/ratelimit"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::ffff:172.16.0.0/108"), // IPv4-mapped: 172.16.0.0/12
	}
	trusting := newLimiter(t, mustMemory(t), ratelimit.Config{TrustedProxies: proxies})
	plain := newLimiter(t, mustMemory(t), ratelimit.Config{})
	cases := []struct {
		name   string
		l      *ratelimit.Limiter
		remote string
		xff    []string
		want   string
	}{
		{"no proxies: peer", plain, "203.0.113.9:5000", nil, "203.0.113.9"},
		{"no proxies: XFF ignored", plain, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer: XFF ignored", trusting, "203.0.113.9:5000", []string{"198.51.100.1, 10.0.0.1"}, "203.0.113.9"},
		{"trusted peer, no XFF: the proxy", trusting, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"trusted peer: rightmost entry", trusting, "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left entries are not read", trusting, "10.1.2.3:5000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops are skipped", trusting, "10.1.2.3:5000", []string{"1.1.1.1, 198.51.100.1, 10.9.9.9 ,10.8.8.8"}, "198.51.100.1"},
		{"several header lines, last line first", trusting, "10.1.2.3:5000", []string{"1.1.1.1, 198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"all trusted: the farthest proxy", trusting, "10.1.2.3:5000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"malformed rightmost entry: the proxy", trusting, "10.1.2.3:5000", []string{"198.51.100.1, bogus"}, "10.1.2.3"},
		{"malformed beyond a trusted hop: that hop", trusting, "10.1.2.3:5000", []string{"198.51.100.1, unknown, 10.2.2.2"}, "10.2.2.2"},
		{"malformed left of the client: not read", trusting, "10.1.2.3:5000", []string{"<script>, 198.51.100.1"}, "198.51.100.1"},
		{"empty entries skipped", trusting, "10.1.2.3:5000", []string{"198.51.100.1,, ", ""}, "198.51.100.1"},
		{"entry with a port", trusting, "10.1.2.3:5000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 entry with brackets and port", trusting, "10.1.2.3:5000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"IPv6 entry bare", trusting, "[fd00::1]:5000", []string{"2001:db8::8"}, "2001:db8::8"},
		{"IPv6 entry in brackets", trusting, "[fd00::1]:5000", []string{"[2001:db8::9]"}, "2001:db8::9"},
		{"IPv4-mapped entry unmapped", trusting, "10.1.2.3:5000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped peer unmapped", plain, "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"IPv4-mapped proxy prefix", trusting, "172.20.0.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"zone dropped", plain, "[fe80::1%eth0]:1", nil, "fe80::1"},
		{"peer without a port", plain, "203.0.113.9", nil, "203.0.113.9"},
		{"peer not an address", trusting, "@", []string{"198.51.100.1"}, "invalid IP"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.l.ClientIP(r).String(); got != tc.want {
			t.Errorf("%s: ClientIP = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestForwardedForBuckets: behind no trusted proxy, rotating X-Forwarded-For
// does not escape the peer's bucket; behind a trusted proxy, each client behind
// it has its own bucket.
func TestForwardedForBuckets(t *testing.T) {
	t.Parallel()
	rates := map[string]string{"public": "2-M"}
	untrusting := newLimiter(t, mustMemory(t), ratelimit.Config{Rates: rates})
	trusting := newLimiter(t, mustMemory(t), ratelimit.Config{
		Rates:          rates,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	send := func(l *ratelimit.Limiter, remote string, n int) []int {
		var codes []int
		for i := range n {
			r := request(remote, "", "")
			r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
			codes = append(codes, serve(l.Handle(ok), r).Code)
		}
		return codes
	}
	if got := fmt.Sprint(send(untrusting, "203.0.113.9:1", 4)); got != "[200 200 429 429]" {
		t.Errorf("spoofed XFF from an untrusted peer: %s, want one bucket for the peer", got)
	}
	if got := fmt.Sprint(send(trusting, "10.0.0.1:1", 4)); got != "[200 200 200 200]" {
		t.Errorf("distinct clients behind a trusted proxy: %s, want one bucket each", got)
	}
}
