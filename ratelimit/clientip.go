package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ipv6Group is the prefix length that groups IPv6 clients into one bucket: a /64
// is what one subscriber usually holds, so a client cannot escape its limit by
// walking through its own addresses.
const ipv6Group = 64

// KeyBucket names the bucket of an authenticated key: "ak:<plan>:<keyHash>".
// plan should be a name ParseRates accepts (no ':'), so that no two plans share a
// bucket; keyHash is the key's hash, never the key itself. KeyBucket(plan, "") is
// the prefix of every bucket of the plan, to which a caller can append hashes.
func KeyBucket(plan, keyHash string) string {
	return "ak:" + plan + ":" + keyHash
}

// AddrBucket names the bucket of an anonymous client: "ip:<IPv4 address>", or
// "ip:<IPv6 /64 prefix>" ("ip:2001:db8:1:2::/64"), so that the addresses of one
// IPv6 subscriber share a bucket; "ip:unknown" for the zero Addr. IPv4-mapped
// addresses count as IPv4 and zones are ignored. Key and address buckets never
// collide.
func AddrBucket(addr netip.Addr) string {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return "ip:unknown"
	}
	var buf [len("ip:") + len("ffff:ffff:ffff:ffff::/64")]byte
	b := append(buf[:0], "ip:"...)
	if addr.Is4() {
		b = addr.AppendTo(b)
	} else {
		b = netip.PrefixFrom(addr, ipv6Group).Masked().AppendTo(b)
	}
	return string(b) // the one allocation
}

// CheckProxies validates a list of trusted proxy prefixes and returns it in the
// form ClientAddr expects, computed once: each prefix masked, and an IPv4-mapped
// IPv6 prefix of at least 96 bits turned into its IPv4 prefix
// ("::ffff:172.16.0.0/108" becomes "172.16.0.0/12"). It fails on a zero or
// otherwise invalid prefix; an empty list gives nil.
func CheckProxies(trusted []netip.Prefix) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, p := range trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("ratelimit: trusted proxy %d (%v) is not a valid prefix", i, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ClientAddr returns the address of the client that sent r, given the proxies
// whose X-Forwarded-For is believed (trusted, as CheckProxies returns it).
//
// It is the peer address (r.RemoteAddr) unless that peer lies in trusted. Then
// X-Forwarded-For (all its header lines, in order) is walked from right to left,
// skipping addresses of trusted proxies; the first untrusted address is the
// client. Entries left of it were written by the client and are never read, so
// they cannot be spoofed. When the walk meets a malformed entry, or every entry
// is a trusted proxy, the last trusted address seen stands for the client.
// IPv4-mapped IPv6 addresses come back as IPv4; zones are dropped. The result is
// the zero Addr when RemoteAddr is not an IP address.
//
// ClientAddr does not allocate; safe for concurrent use.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || !contains(trusted, peer) {
		return peer
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else {
				rest, entry = "", rest
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			addr := parseHost(entry)
			if !addr.IsValid() {
				return client
			}
			client = addr
			if !contains(trusted, addr) {
				return client
			}
		}
	}
	return client
}

// contains reports whether addr lies in one of prefixes.
func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseHost parses "addr", "addr:port", "[addr]" or "[addr]:port" into a
// normalised address (IPv4-mapped unmapped, zone dropped); the zero Addr when s
// is none of those. It allocates only for malformed input.
func parseHost(s string) netip.Addr {
	host := s
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		// One colon: an IPv4 address and a port (an IPv6 address has several).
		if !validPort(s[i+1:]) {
			return netip.Addr{}
		}
		host = s[:i]
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap().WithZone("")
}

// validPort reports whether s is a decimal port number, 0 to 65535.
func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
