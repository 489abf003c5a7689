// Package faultproxy puts a TCP proxy between the code under test and a real
// upstream, such as the machine's PostgreSQL or Redis, so that a test can cut the
// link, slow it down and restore it without ever stopping the upstream itself.
//
// It runs Shopify's toxiproxy in process, as a library: no toxiproxy server, no
// HTTP API, no port but the proxy's own on the loopback interface. A Proxy is
// safe for concurrent use, but Cut, Restore and Latency fail the test through
// t.Fatalf and so belong to the test's goroutine.
package faultproxy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// latencyToxic names the toxic Latency adds.
const latencyToxic = "faultproxy_latency"

// Proxy forwards every connection made to Addr to the upstream.
type Proxy struct {
	t        testing.TB
	addr     string
	upstream string

	mu      sync.Mutex
	tp      *toxiproxy.Proxy
	cut     bool
	latency time.Duration // 0: none
}

// Start starts a proxy on a free loopback port to upstream (HOST:PORT). The
// proxy is closed when the test ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		t.Fatalf("faultproxy: upstream %q: want HOST:PORT", upstream)
	}
	// The API server is only the proxy's home for its logger and metrics; it
	// never listens. Logs are off: the test reports what matters.
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	tp := toxiproxy.NewProxy(api, "faultproxy "+upstream, "127.0.0.1:0", upstream)
	if err := tp.Start(); err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{t: t, addr: tp.Listen, upstream: upstream, tp: tp}
	t.Cleanup(p.close)
	return p
}

// ForURL starts a proxy to the host and port of rawURL (a postgres://, redis://
// or other URL with a host) and returns it with rawURL rewritten to go through
// it. Everything else in the URL (user, database, parameters) is kept.
func ForURL(t testing.TB, rawURL string) (*Proxy, string) {
	t.Helper()
	upstream, err := HostPort(rawURL)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	p := Start(t, upstream)
	return p, p.Through(rawURL)
}

// defaultPorts are the ports of URL schemes that may leave theirs out.
var defaultPorts = map[string]string{
	"postgres":   "5432",
	"postgresql": "5432",
	"redis":      "6379",
	"rediss":     "6379",
}

// HostPort returns the HOST:PORT that rawURL connects to, with the scheme's
// default port (PostgreSQL's or Redis's) when the URL names none.
func HostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("%q is not a URL with a host", redact(rawURL))
	}
	port := u.Port()
	if port == "" {
		port = defaultPorts[strings.ToLower(u.Scheme)]
		if port == "" {
			return "", fmt.Errorf("%q names no port and scheme %q has no default", redact(rawURL), u.Scheme)
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// Through returns rawURL with its host and port replaced by the proxy's.
func (p *Proxy) Through(rawURL string) string {
	p.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		p.t.Fatalf("faultproxy: %q is not a URL", redact(rawURL))
	}
	u.Host = p.addr
	return u.String()
}

// Addr is the proxy's HOST:PORT on the loopback interface. It stays the same
// across Cut and Restore.
func (p *Proxy) Addr() string { return p.addr }

// Upstream is the HOST:PORT the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Cut breaks the link: the proxy stops listening, so new connections are
// refused, and closes every established connection on both sides at once, so
// that their clients' next read ends (EOF) and their writes fail. The upstream
// sees its clients go away; it keeps running. Cut on a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.tp.Stop()
	p.cut = true
}

// Restore undoes Cut and Latency: the proxy listens again on the same address
// and forwards without delay. Connections cut stay closed; clients must open new
// ones, as they would after a real outage.
func (p *Proxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLatency()
	if !p.cut {
		return
	}
	if err := p.tp.Start(); err != nil {
		p.t.Fatalf("faultproxy: listen again on %s: %v", p.addr, err)
	}
	p.cut = false
}

// Latency delays by d everything the upstream sends through the proxy, on the
// connections established and on new ones, so that each request-response round
// trip takes d longer (a new connection's handshake pays it once per round trip).
// Bytes keep their order; what the client sends is not delayed. Latency replaces
// an earlier Latency; Latency(0) and Restore remove it.
func (p *Proxy) Latency(d time.Duration) {
	p.t.Helper()
	if d < 0 {
		p.t.Fatalf("faultproxy: negative latency %v", d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLatency()
	if d == 0 {
		return
	}
	ms := max(d.Milliseconds(), 1)
	spec := fmt.Sprintf(`{"name":%q,"type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":%d}}`,
		latencyToxic, ms)
	if _, err := p.tp.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		p.t.Fatalf("faultproxy: add latency: %v", err)
	}
	p.latency = d
}

// removeLatency removes the latency toxic, if any; p.mu is held. Bytes it holds
// back are let through at once.
func (p *Proxy) removeLatency() {
	if p.latency == 0 {
		return
	}
	if err := p.tp.Toxics.RemoveToxic(context.Background(), latencyToxic); err != nil {
		p.t.Errorf("faultproxy: remove latency: %v", err)
	}
	p.latency = 0
}

// close stops the proxy for good: at the end of the test.
func (p *Proxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLatency()
	p.tp.Stop()
	p.cut = true
}
