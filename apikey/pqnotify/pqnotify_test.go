package pqnotify_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey/pqnotify"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// hang bounds every wait for a callback: it guards against a test that would
// hang, and asserts nothing about speed.
const hang = 60 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// call is one callback the listener made.
type call struct {
	state  bool // a call of onState (else onChange)
	up     bool
	hashes []string
}

func (c call) String() string {
	if c.state {
		return fmt.Sprintf("onState(%v)", c.up)
	}
	return fmt.Sprintf("onChange(%q)", c.hashes)
}

// recorder records the callbacks in order.
type recorder struct {
	t       *testing.T
	calls   chan call
	stopped atomic.Bool
	active  atomic.Int32 // callbacks running, to catch concurrent calls
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, calls: make(chan call, 1024)}
}

func (r *recorder) enter() {
	if r.active.Add(1) != 1 {
		r.t.Error("two callbacks ran at once")
	}
	if r.stopped.Load() {
		r.t.Error("a callback ran after stop returned")
	}
}

func (r *recorder) onChange(hashes []string) {
	r.enter()
	defer r.active.Add(-1)
	r.calls <- call{hashes: slices.Clone(hashes)}
}

func (r *recorder) onState(up bool) {
	r.enter()
	defer r.active.Add(-1)
	r.calls <- call{state: true, up: up}
}

// next returns the next callback.
func (r *recorder) next() call {
	r.t.Helper()
	select {
	case c := <-r.calls:
		return c
	case <-time.After(hang):
		r.t.Fatalf("no callback in %v", hang)
		return call{}
	}
}

// expect checks that the next callbacks are want, in order.
func (r *recorder) expect(want ...call) {
	r.t.Helper()
	for _, w := range want {
		if got := r.next(); got.String() != w.String() {
			r.t.Fatalf("callback %v, want %v", got, w)
		}
	}
}

func state(up bool) call           { return call{state: true, up: up} }
func change(hashes ...string) call { return call{hashes: hashes} }

// target is a PostgreSQL database for a test: the URL of a fresh schema, the
// same URL with a unique application_name for the listener (to find its
// backend), a pool, and a channel no other test uses (channels are
// database-wide).
type target struct {
	base, url, app, channel string
	db                      *sqlx.DB
}

func newTarget(t *testing.T) target {
	u := testenv.PostgresURL(t)
	db := testenv.OpenPostgres(t, u)
	app := testenv.Unique("tgl_")
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	q.Set("application_name", app)
	parsed.RawQuery = q.Encode()
	return target{base: u, url: parsed.String(), app: app, channel: testenv.Unique("tgch_"), db: db}
}

func (tg target) notify(t *testing.T, payload string) {
	t.Helper()
	if _, err := tg.db.Exec(`SELECT pg_notify($1, $2)`, tg.channel, payload); err != nil {
		t.Fatal(err)
	}
}

// terminate ends the listener's backend from another connection.
func (tg target) terminate(t *testing.T) {
	t.Helper()
	var n int
	err := tg.db.Get(&n, `SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()) AS t`, tg.app)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("terminated %d backends, want the listener's one", n)
	}
}

func listen(t *testing.T, cfg pqnotify.Config, dsn, channel string, r *recorder) (stop func()) {
	t.Helper()
	stopListener, err := cfg.Listen(context.Background(), dsn, channel, r.onChange, r.onState, quiet)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopListener()
			r.stopped.Store(true)
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestListenDelivers(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	r := newRecorder(t)
	listen(t, pqnotify.Config{}, tg.url, tg.channel, r)
	// Listening: forget everything, then up.
	r.expect(change(), state(true))

	hash := strings.Repeat("ab", 32)
	tg.notify(t, hash)
	r.expect(change(hash))

	// An empty payload means every key.
	tg.notify(t, "")
	r.expect(change())

	// Other channels are not heard; notifications arrive in commit order.
	if _, err := tg.db.Exec(`SELECT pg_notify($1, 'elsewhere')`, tg.channel+"_other"); err != nil {
		t.Fatal(err)
	}
	tg.notify(t, "one")
	tg.notify(t, "two")
	r.expect(change("one"), change("two"))
}

// TestNotifyInRolledBackTransaction: a notification sent in a transaction that
// rolls back is never delivered; one that commits is, at its commit.
func TestNotifyInRolledBackTransaction(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	r := newRecorder(t)
	listen(t, pqnotify.Config{}, tg.url, tg.channel, r)
	r.expect(change(), state(true))

	tx := tg.db.MustBegin()
	if _, err := tx.Exec(`SELECT pg_notify($1, 'rolled back')`, tg.channel); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	tx = tg.db.MustBegin()
	if _, err := tx.Exec(`SELECT pg_notify($1, 'committed')`, tg.channel); err != nil {
		t.Fatal(err)
	}
	tg.notify(t, "outside") // commits first
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tg.notify(t, "after")
	r.expect(change("outside"), change("committed"), change("after"))
}

// TestReconnect cuts the listener's connection from the server side, twice: the
// loss is reported, the listener reconnects by itself, says to forget
// everything, and hears notifications again.
func TestReconnect(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	r := newRecorder(t)
	cfg := pqnotify.Config{MinReconnect: 10 * time.Millisecond, MaxReconnect: 100 * time.Millisecond, PingInterval: time.Hour}
	listen(t, cfg, tg.url, tg.channel, r)
	r.expect(change(), state(true))
	for i := range 2 {
		tg.terminate(t)
		r.expect(state(false), change(), state(true))
		payload := fmt.Sprintf("after cut %d", i+1)
		tg.notify(t, payload)
		r.expect(change(payload))
	}
}

// TestSilentConnectionLoss: a connection that stops answering without closing
// (a dropped NAT entry, a frozen network) is found by the pings, reported, closed
// and replaced.
func TestSilentConnectionLoss(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	p := newProxy(t, tg.url)
	r := newRecorder(t)
	cfg := pqnotify.Config{
		MinReconnect: 10 * time.Millisecond, MaxReconnect: 100 * time.Millisecond,
		PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond,
	}
	listen(t, cfg, p.url, tg.channel, r)
	r.expect(change(), state(true))
	tg.notify(t, "before")
	r.expect(change("before"))

	p.freeze() // the current connection goes silent; new ones work
	r.expect(state(false), change(), state(true))
	tg.notify(t, "after")
	r.expect(change("after"))
	if n := p.accepted.Load(); n < 2 {
		t.Errorf("the proxy saw %d connections, want a new one after the freeze", n)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	r := newRecorder(t)
	stop := listen(t, pqnotify.Config{}, tg.url, tg.channel, r)
	r.expect(change(), state(true))
	stop()
	stop() // harmless
	// Nothing is delivered after stop (the recorder fails the test if it is).
	tg.notify(t, "after stop")
	var n int
	if err := tg.db.Get(&n, `SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1`, tg.app); err != nil {
		t.Fatal(err)
	}
	for n > 0 { // the server ends the backend once the connection is closed
		time.Sleep(10 * time.Millisecond)
		if err := tg.db.Get(&n, `SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1`, tg.app); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nop := func([]string) {}
	for _, ch := range []string{"", strings.Repeat("c", 64), "a\x00b"} {
		if _, err := pqnotify.Listen(ctx, "postgres://127.0.0.1:1/x", ch, nop, nil, quiet); err == nil {
			t.Errorf("channel %q: no error", ch)
		}
	}
	if _, err := pqnotify.Listen(ctx, "postgres://127.0.0.1:1/x", "c", nil, nil, quiet); err == nil {
		t.Error("nil onChange: no error")
	}

	// Nothing listens on the port: the first attempt's error, at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = pqnotify.Listen(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable", "c", nop, nil, quiet)
	if err == nil || !strings.HasPrefix(err.Error(), "pqnotify: connect: ") {
		t.Errorf("unreachable server: %v", err)
	}

	// A server that accepts and never answers: ctx bounds the start.
	silent := newProxy(t, "")
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = pqnotify.Listen(ctx, silent.url, "c", nop, nil, quiet)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: %v, want the context's error", err)
	}

	// A bad password (or any refusal by the server) is returned too.
	tg := newTarget(t)
	u, _ := url.Parse(tg.url)
	u.User = url.UserPassword("no_such_role_"+testenv.Unique(""), "x")
	_, err = pqnotify.Listen(context.Background(), u.String(), "c", nop, nil, quiet)
	if err == nil || !strings.Contains(err.Error(), "pqnotify: ") {
		t.Errorf("unknown role: %v", err)
	}
}

// proxy forwards TCP connections to a PostgreSQL server and can silence the
// ones open now: it keeps them open but stops forwarding, in both directions.
// With no target it accepts connections and never answers.
type proxy struct {
	url      string
	target   string
	accepted atomic.Int32
	mu       sync.Mutex
	frozen   []*atomic.Bool
}

func newProxy(t *testing.T, rawURL string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		p.target = u.Host
		u.Host = ln.Addr().String()
		p.url = u.String()
	} else {
		p.url = "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable"
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			if p.target == "" {
				continue // accept, never answer
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, s)
			mu.Unlock()
			frozen := new(atomic.Bool)
			p.mu.Lock()
			p.frozen = append(p.frozen, frozen)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer conns.Done()
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if frozen.Load() {
						continue // swallowed, as by a network that went dark
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			conns.Add(2)
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return p
}

// freeze silences every connection open now.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		f.Store(true)
	}
}
