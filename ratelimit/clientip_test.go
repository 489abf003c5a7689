package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/releaseradar/tollgate/ratelimit"
)

// proxies are the trusted proxies of the ClientAddr tests, as CheckProxies
// normalises them.
func proxies(t *testing.T) []netip.Prefix {
	t.Helper()
	p, err := ratelimit.CheckProxies([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::ffff:172.16.0.0/108"), // IPv4-mapped: 172.16.0.0/12
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusting := proxies(t)
	cases := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{"no proxies: peer", nil, "203.0.113.9:5000", nil, "203.0.113.9"},
		{"no proxies: XFF ignored", nil, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
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
		{"entry with a bad port: the proxy", trusting, "10.1.2.3:5000", []string{"198.51.100.1:99999"}, "10.1.2.3"},
		{"entry with an empty port: the proxy", trusting, "10.1.2.3:5000", []string{"198.51.100.1:"}, "10.1.2.3"},
		{"IPv6 entry with brackets and port", trusting, "10.1.2.3:5000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"IPv6 entry bare", trusting, "[fd00::1]:5000", []string{"2001:db8::8"}, "2001:db8::8"},
		{"IPv6 entry in brackets", trusting, "[fd00::1]:5000", []string{"[2001:db8::9]"}, "2001:db8::9"},
		{"IPv6 entry, unclosed bracket: the proxy", trusting, "[fd00::1]:5000", []string{"[2001:db8::9"}, "fd00::1"},
		{"IPv6 entry, junk after the bracket: the proxy", trusting, "[fd00::1]:5000", []string{"[2001:db8::9]x"}, "fd00::1"},
		{"IPv4-mapped entry unmapped", trusting, "10.1.2.3:5000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped peer unmapped", nil, "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"IPv4-mapped proxy prefix", trusting, "172.20.0.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped trusted peer", trusting, "[::ffff:10.1.2.3]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"zone dropped", nil, "[fe80::1%eth0]:1", nil, "fe80::1"},
		{"peer without a port", nil, "203.0.113.9", nil, "203.0.113.9"},
		{"peer not an address", trusting, "@", []string{"198.51.100.1"}, "invalid IP"},
		{"peer empty", trusting, "", nil, "invalid IP"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ratelimit.ClientAddr(r, tc.trusted).String(); got != tc.want {
			t.Errorf("%s: ClientAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestClientAddrDoesNotAllocate: the walk through well-formed entries is free,
// and an address bucket costs its string.
func TestClientAddrDoesNotAllocate(t *testing.T) {
	trusting := proxies(t)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.2.3:5000"
	r.Header.Add("X-Forwarded-For", "1.1.1.1, [2001:db8::7]:443, 198.51.100.1:80, 10.9.9.9")
	if n := testing.AllocsPerRun(100, func() { ratelimit.ClientAddr(r, trusting) }); n != 0 {
		t.Errorf("ClientAddr: %v allocations", n)
	}
	for _, a := range []string{"198.51.100.1", "2001:db8:1:2::9"} {
		addr := netip.MustParseAddr(a)
		if n := testing.AllocsPerRun(100, func() { ratelimit.AddrBucket(addr) }); n != 1 {
			t.Errorf("AddrBucket(%v): %v allocations, want 1 (the string)", addr, n)
		}
	}
}

// TestForwardedForBuckets: behind no trusted proxy, rotating X-Forwarded-For
// does not escape the peer's bucket; behind a trusted proxy, each client behind
// it has its own.
func TestForwardedForBuckets(t *testing.T) {
	t.Parallel()
	buckets := func(trusted []netip.Prefix, remote string) map[string]bool {
		out := make(map[string]bool)
		for i := range 4 {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = remote
			r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
			out[ratelimit.AddrBucket(ratelimit.ClientAddr(r, trusted))] = true
		}
		return out
	}
	if got := buckets(nil, "203.0.113.9:1"); len(got) != 1 || !got["ip:203.0.113.9"] {
		t.Errorf("spoofed XFF from an untrusted peer: buckets %v, want the peer's alone", got)
	}
	if got := buckets(proxies(t), "10.0.0.1:1"); len(got) != 4 {
		t.Errorf("distinct clients behind a trusted proxy: buckets %v, want one each", got)
	}
}

func TestCheckProxies(t *testing.T) {
	t.Parallel()
	got, err := ratelimit.CheckProxies([]netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"),
		netip.MustParsePrefix("::ffff:172.16.5.4/108"),
		netip.MustParsePrefix("::ffff:0:0/96"), // every IPv4 address
		netip.MustParsePrefix("::ffff:0:0/80"), // wider than the mapped range: stays IPv6
		netip.MustParsePrefix("2001:db8::1/32"),
		netip.MustParsePrefix("192.0.2.1/32"),
	})
	if want := "[10.0.0.0/8 172.16.0.0/12 0.0.0.0/0 ::/80 2001:db8::/32 192.0.2.1/32]"; err != nil || fmt.Sprint(got) != want {
		t.Errorf("CheckProxies = %v, %v; want %s", got, err, want)
	}
	if got, err := ratelimit.CheckProxies(nil); got != nil || err != nil {
		t.Errorf("CheckProxies(nil) = %v, %v", got, err)
	}
	in := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}
	if got, err := ratelimit.CheckProxies(in); err == nil || !strings.HasPrefix(err.Error(), "ratelimit: trusted proxy 1 ") {
		t.Errorf("CheckProxies with a zero prefix = %v, %v; want an error naming it", got, err)
	}
}

func TestBuckets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
	}{
		{ratelimit.KeyBucket("gold", "5e88"), "ak:gold:5e88"},
		{ratelimit.KeyBucket("free", "5e88"), "ak:free:5e88"},
		{ratelimit.KeyBucket("gold", ""), "ak:gold:"},
		{ratelimit.AddrBucket(netip.MustParseAddr("192.0.2.1")), "ip:192.0.2.1"},
		{ratelimit.AddrBucket(netip.MustParseAddr("::ffff:192.0.2.1")), "ip:192.0.2.1"},
		{ratelimit.AddrBucket(netip.MustParseAddr("2001:db8:1:2:aaaa::1")), "ip:2001:db8:1:2::/64"},
		{ratelimit.AddrBucket(netip.MustParseAddr("2001:db8:1:2:bbbb::9")), "ip:2001:db8:1:2::/64"},
		{ratelimit.AddrBucket(netip.MustParseAddr("2001:db8:1:3::1")), "ip:2001:db8:1:3::/64"},
		{ratelimit.AddrBucket(netip.MustParseAddr("fe80::1%eth0")), "ip:fe80::/64"},
		{ratelimit.AddrBucket(netip.Addr{}), "ip:unknown"},
	} {
		if tc.got != tc.want {
			t.Errorf("bucket %q, want %q", tc.got, tc.want)
		}
	}
}
