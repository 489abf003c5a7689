package ratelimit

import (
	"net/http"
	"net/netip"
	"strings"
)

// ipv6Group is the prefix length that groups IPv6 clients into one bucket: a /64
// is what one subscriber usually holds, so a client cannot escape its limit by
// walking through its own addresses.
const ipv6Group = 64

// ClientIP returns the address of the client that sent r.
//
// It is the peer address (r.RemoteAddr) unless that peer lies in
// Config.TrustedProxies. Then X-Forwarded-For (all its header lines, in order) is
// walked from right to left, skipping addresses of trusted proxies; the first
// untrusted address is the client. Entries left of it were written by the client
// and are never read, so they cannot be spoofed. When the walk meets a malformed
// entry, or every entry is a trusted proxy, the last trusted address seen stands
// for the client. IPv4-mapped IPv6 addresses come back as IPv4; zones are dropped.
// The result is the zero netip.Addr when RemoteAddr is not an IP address.
func (l *Limiter) ClientIP(r *http.Request) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || !l.trusted(peer) {
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
			if !l.trusted(addr) {
				return client
			}
		}
	}
	return client
}

// trusted reports whether addr is one of Config.TrustedProxies.
func (l *Limiter) trusted(addr netip.Addr) bool {
	for _, p := range l.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseHost parses "addr", "addr:port" or "[addr]:port" into a normalised address
// (IPv4-mapped unmapped, zone dropped); the zero Addr when s is none of those.
func parseHost(s string) netip.Addr {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		addr = ap.Addr()
	} else if a, err := netip.ParseAddr(unbracket(s)); err == nil {
		addr = a
	} else {
		return netip.Addr{}
	}
	return addr.Unmap().WithZone("")
}

// unbracket strips the brackets of "[addr]".
func unbracket(s string) string {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

// ipBucket names the bucket of an anonymous client: "ip:<IPv4>" or
// "ip:<IPv6 /64 prefix>"; "ip:unknown" when the address is not known.
func ipBucket(addr netip.Addr) string {
	switch {
	case !addr.IsValid():
		return "ip:unknown"
	case addr.Is4():
		return "ip:" + addr.String()
	default:
		return "ip:" + netip.PrefixFrom(addr, ipv6Group).Masked().String()
	}
}

// keyBucket names the bucket of an authenticated key: "ak:<policy>:<hash>".
func keyBucket(p *policy, keyHash string) string {
	return "ak:" + p.name + ":" + keyHash
}
