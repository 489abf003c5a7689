package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/faultproxy"
)

// echo starts a line echo server on loopback and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and waits for its echo; it returns the time taken.
func (c *client) roundTrip(line string) (time.Duration, error) {
	start := time.Now()
	_ = c.c.SetDeadline(start.Add(5 * time.Second))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return 0, err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if got != line+"\n" {
		return 0, errors.New("echo mismatch: " + got)
	}
	return time.Since(start), nil
}

func TestFaultProxyForwards(t *testing.T) {
	up := echo(t)
	p := faultproxy.Start(t, up)
	if p.Upstream() != up || p.Addr() == up {
		t.Fatalf("Addr %s, Upstream %s (upstream %s)", p.Addr(), p.Upstream(), up)
	}
	c := dial(t, p.Addr())
	for _, line := range []string{"one", "two", "three"} {
		if _, err := c.roundTrip(line); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFaultProxyCutRestore(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("before"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	p.Cut() // idempotent
	// The established connection is closed under the client...
	if _, err := c.roundTrip("during"); err == nil {
		t.Fatal("a round trip on a cut connection succeeded")
	}
	// ...and new connections are refused at once.
	start := time.Now()
	_, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a cut proxy: %v, want connection refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v", d)
	}
	p.Restore()
	c = dial(t, p.Addr()) // the same address
	if _, err := c.roundTrip("after"); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

func TestFaultProxyLatency(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	c := dial(t, p.Addr())
	base, err := c.roundTrip("warm")
	if err != nil {
		t.Fatal(err)
	}
	const d = 300 * time.Millisecond
	p.Latency(d)
	for _, line := range []string{"slow1", "slow2"} {
		took, err := c.roundTrip(line)
		if err != nil {
			t.Fatal(err)
		}
		// Each round trip pays the latency once, not cumulatively.
		if took < d || took > d+time.Second {
			t.Fatalf("round trip with %v latency took %v (without: %v)", d, took, base)
		}
	}
	// A new connection is slowed too.
	c2 := dial(t, p.Addr())
	if took, err := c2.roundTrip("new"); err != nil || took < d {
		t.Fatalf("new connection under latency: %v, %v", took, err)
	}
	p.Latency(2 * d) // replaces
	if took, err := c.roundTrip("slower"); err != nil || took < 2*d {
		t.Fatalf("replaced latency: %v, %v", took, err)
	}
	p.Restore()
	if took, err := c.roundTrip("fast"); err != nil || took >= d {
		t.Fatalf("after Restore: %v, %v", took, err)
	}
}

func TestFaultProxyHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable": "127.0.0.1:5432",
		"postgres://u:secret@db.example/test":                     "db.example:5432",
		"redis://127.0.0.1:6379/0":                                "127.0.0.1:6379",
		"redis://[::1]/0":                                         "[::1]:6379",
	} {
		got, err := faultproxy.HostPort(in)
		if err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"sqlite:x.db", "http://host/x", "::"} {
		if _, err := faultproxy.HostPort(bad); err == nil {
			t.Errorf("HostPort(%q) succeeded", bad)
		}
	}
	if _, err := faultproxy.HostPort("postgres://u:hunter2@:bad"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a bad URL's error shows its password: %v", err)
	}
	p, through := faultproxy.ForURL(t, "redis://"+echo(t)+"/3")
	if through != "redis://"+p.Addr()+"/3" {
		t.Fatalf("ForURL rewrote to %q", through)
	}
}
