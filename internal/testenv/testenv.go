// Package testenv gives tests isolated backends: a fresh PostgreSQL schema, a SQLite
// file in t.TempDir(), a Redis key prefix, and a stripe-mock of their own. A backend
// whose URL (or binary) is not set skips the test with a clear message, or fails it
// when CI=true.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver for tests
	"github.com/redis/go-redis/v9"
	"github.com/releaseradar/tollgate/internal/sqldb"
	_ "modernc.org/sqlite" // SQLite driver for tests
)

const (
	// PostgresEnv names the variable holding the test PostgreSQL URL.
	PostgresEnv = "TOLLGATE_TEST_POSTGRES_URL"
	// RedisEnv names the variable holding the test Redis URL.
	RedisEnv = "TOLLGATE_TEST_REDIS_URL"
)

// need returns the value of the environment variable env, or skips (fails under
// CI=true) when it is unset.
func need(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the %s integration tests", env, what)
		}
		t.Skipf("%s not set: skipping the %s integration test (set it to run against a real server)", env, what)
	}
	return v
}

// Unique returns a short random lower-case identifier starting with prefix.
func Unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// PostgresURL creates a fresh schema, dropped when the test ends, and returns a URL
// whose connections use it as their search_path. Several pools opened on the URL
// share the schema, as replicas would share a database.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := need(t, PostgresEnv, "PostgreSQL")
	schema := Unique("tg_")
	admin, err := sqlx.Open("postgres", base)
	if err != nil {
		t.Fatalf("testenv: open postgres: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sqlx.Open("postgres", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: %s is not a URL", PostgresEnv)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// OpenPostgres opens a pool on url (from PostgresURL), closed when the test ends.
func OpenPostgres(t testing.TB, url string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatalf("testenv: open postgres: %v", err)
	}
	db.SetMaxOpenConns(16)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("testenv: ping postgres: %v", err)
	}
	return db
}

// Postgres returns a pool on a fresh schema of the test PostgreSQL server.
func Postgres(t testing.TB) *sqlx.DB {
	t.Helper()
	return OpenPostgres(t, PostgresURL(t))
}

// SQLitePath returns the path of a new SQLite database file in t.TempDir().
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

// OpenSQLite opens the SQLite file at path with tollgate's settings.
func OpenSQLite(t testing.TB, path string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(path))
	if err != nil {
		t.Fatalf("testenv: open sqlite: %v", err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLite returns a handle on a new SQLite database in t.TempDir().
func SQLite(t testing.TB) *sqlx.DB {
	t.Helper()
	return OpenSQLite(t, SQLitePath(t))
}

// DB runs f once per SQL backend as a subtest ("sqlite", "postgres"), each with a
// fresh database.
func DB(t *testing.T, f func(t *testing.T, db *sqlx.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

// RedisURL returns the test Redis URL, or skips (fails under CI=true).
func RedisURL(t testing.TB) string {
	t.Helper()
	return need(t, RedisEnv, "Redis")
}

// RedisClient returns a new client on url (from RedisURL), closed when the test
// ends: a second replica's connection to the same Redis.
func RedisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testenv: %s: %v", RedisEnv, err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// Redis returns a client on the test Redis server and a key prefix unique to this
// test; keys under the prefix are deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatalf("testenv: %s: %v", RedisEnv, err)
	}
	c := redis.NewClient(opts)
	prefix := Unique("tgtest:") + ":"
	t.Cleanup(func() {
		iter := c.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
		for iter.Next(context.Background()) {
			c.Del(context.Background(), iter.Val())
		}
		c.Close()
	})
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("testenv: ping redis: %v", err)
	}
	return c, prefix
}

// Buffer is a bytes.Buffer that several goroutines may write to at once, such as
// a logger's handler and a process's stderr, and a test read.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Reset forgets everything written so far.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// Clock is a clock a test sets and moves, which the goroutines of the code under
// test (a gate's flush loop, a lease's idle timer) may read meanwhile. Pass its
// Now where a Config takes a clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock by d and returns its new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// StripeMockEnv names the variable holding the path of the stripe-mock binary
// (go install github.com/stripe/stripe-mock@v0.203.0).
const StripeMockEnv = "TOLLGATE_TEST_STRIPE_MOCK"

var stripeListening = regexp.MustCompile(`Listening for HTTP at address: (\S+)\r?\n`)

// StripeMock runs stripe-mock (Stripe's API served from Stripe's own OpenAPI
// description, stateless: every object comes back as its fixture) on free
// loopback ports until the test ends, and returns its HTTP base URL,
// http://127.0.0.1:PORT. It skips the test without TOLLGATE_TEST_STRIPE_MOCK, or
// fails it when CI=true.
func StripeMock(t testing.TB) string {
	t.Helper()
	bin := need(t, StripeMockEnv, "stripe-mock")
	ctx, cancel := context.WithCancel(context.Background())
	out := &stripeOutput{addr: make(chan string, 1)}
	cmd := exec.CommandContext(ctx, bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("testenv: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	var base string
	select {
	case a := <-out.addr:
		base = "http://" + a
	case <-exited:
		t.Fatalf("testenv: stripe-mock exited before listening: %s", out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("testenv: stripe-mock did not say where it listens within 30 s: %s", out.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/customers/cus_ready")
		if err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: stripe-mock at %s does not answer: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stripeOutput collects stripe-mock's output and reports the HTTP address it
// prints.
type stripeOutput struct {
	Buffer
	addr chan string
	sent bool
}

func (o *stripeOutput) Write(p []byte) (int, error) {
	n, err := o.Buffer.Write(p)
	o.mu.Lock()
	defer o.mu.Unlock()
	if m := stripeListening.FindSubmatch(o.buf.Bytes()); m != nil && !o.sent {
		o.sent = true
		o.addr <- string(m[1])
	}
	return n, err
}
