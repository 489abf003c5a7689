package loginlink_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/loginlink"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// newClock returns a settable clock for Config.Now.
func newClock() *testenv.Clock {
	return testenv.NewClock(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
}

// backends runs f on SQLite and PostgreSQL. open returns a new pool on the one
// database of the subtest each time it is called, as another process would open
// it.
func backends(t *testing.T, f func(t *testing.T, open func() *sqlx.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := testenv.SQLitePath(t)
		f(t, func() *sqlx.DB { return testenv.OpenSQLite(t, path) })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		url := testenv.PostgresURL(t)
		f(t, func() *sqlx.DB { return testenv.OpenPostgres(t, url) })
	})
}

// newStore returns a bootstrapped store on db with the clock c.
func newStore(t *testing.T, db *sqlx.DB, c *testenv.Clock) *loginlink.Store {
	t.Helper()
	s := loginlink.New(db, loginlink.Config{Now: c.Now})
	if err := s.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func create(t *testing.T, s *loginlink.Store, user string, ttl time.Duration) string {
	t.Helper()
	tok, _, err := s.Create(t.Context(), user, ttl)
	if err != nil {
		t.Fatalf("Create(%q, %s): %v", user, ttl, err)
	}
	return tok
}

func TestSingleUse(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		s := newStore(t, open(), c)
		alice, bob := create(t, s, "alice", 15*time.Minute), create(t, s, "bob", 15*time.Minute)
		if alice == bob || len(alice) != loginlink.TokenLen {
			t.Fatalf("tokens %q and %q", alice, bob)
		}
		if user, err := s.Consume(t.Context(), bob); err != nil || user != "bob" {
			t.Fatalf("first use of bob's link: %q, %v", user, err)
		}
		if user, err := s.Consume(t.Context(), bob); !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("second use of bob's link: %q, %v; want ErrInvalid", user, err)
		}
		// Another store on the same database (another replica) refuses it too,
		// and spending bob's link left alice's alone.
		other := loginlink.New(open(), loginlink.Config{Now: c.Now})
		if _, err := other.Consume(t.Context(), bob); !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("bob's link on another pool: %v", err)
		}
		if user, err := other.Consume(t.Context(), alice); err != nil || user != "alice" {
			t.Fatalf("alice's link on another pool: %q, %v", user, err)
		}
	})
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		s := newStore(t, open(), c)
		start := c.Now()
		ttl := 15 * time.Minute
		early, atExpiry, late := create(t, s, "u1", ttl), create(t, s, "u2", ttl), create(t, s, "u3", ttl)

		c.Set(start.Add(ttl - time.Microsecond))
		if user, err := s.Consume(t.Context(), early); err != nil || user != "u1" {
			t.Fatalf("a microsecond before expiry: %q, %v", user, err)
		}
		c.Set(start.Add(ttl))
		if _, err := s.Consume(t.Context(), atExpiry); !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("at the expiry instant: %v, want ErrInvalid", err)
		}
		c.Set(start.Add(time.Hour))
		if _, err := s.Consume(t.Context(), late); !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("an hour later: %v, want ErrInvalid", err)
		}
		// A used link stays refused even before its expiry.
		c.Set(start)
		if user, err := s.Consume(t.Context(), early); !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("the used link with the clock set back: %q, %v", user, err)
		}
	})
}

func TestCreateReportsExpiry(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := newStore(t, testenv.SQLite(t), c)
	_, exp, err := s.Create(t.Context(), "u", 90*time.Second)
	if err != nil || !exp.Equal(c.Now().Add(90*time.Second)) {
		t.Fatalf("expiry %v, %v; want %v", exp, err, c.Now().Add(90*time.Second))
	}
}

func TestUnknownAndMalformed(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		db := open()
		s := newStore(t, db, c)
		real := create(t, s, "u", time.Minute)
		bad := []string{
			"",
			"short",
			strings.Repeat("A", loginlink.TokenLen), // well formed, unknown
			real[:loginlink.TokenLen-1] + "!",       // not base64url
			real + "A",                              // too long
			strings.Repeat("A", loginlink.TokenLen-1) + "\x00", // NUL
			strings.Repeat("é", loginlink.TokenLen/2) + "A",    // not ASCII
			" " + real[1:], // space
			real + "=",     // padded
		}
		for _, tok := range bad {
			if user, err := s.Consume(t.Context(), tok); !errors.Is(err, loginlink.ErrInvalid) {
				t.Errorf("Consume(%q) = %q, %v; want ErrInvalid", tok, user, err)
			}
		}
		// None of that spent the real link.
		if user, err := s.Consume(t.Context(), real); err != nil || user != "u" {
			t.Fatalf("the real link after the bad ones: %q, %v", user, err)
		}
	})
}

// A malformed token is refused without the database; a well-formed one on a
// database that fails is the database's error, which the table answers 503 and
// which is not ErrInvalid.
func TestDatabaseFailure(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	s := newStore(t, db, newClock())
	db.Close()
	if _, err := s.Consume(context.Background(), "nope"); !errors.Is(err, loginlink.ErrInvalid) {
		t.Fatalf("malformed token on a closed database: %v, want ErrInvalid", err)
	}
	_, err := s.Consume(context.Background(), strings.Repeat("A", loginlink.TokenLen))
	if err == nil || errors.Is(err, loginlink.ErrInvalid) || !strings.HasPrefix(err.Error(), "loginlink: consume: ") {
		t.Fatalf("well-formed token on a closed database: %v", err)
	}
	if status, _, dep := problem.For(err); status != 503 || !dep {
		t.Fatalf("the table answers a database failure %d (dependency %v), want 503", status, dep)
	}
	if status, _, _ := problem.For(loginlink.ErrInvalid); status >= 500 {
		t.Fatalf("ErrInvalid is answered %d, want a 4xx", status)
	}
	if _, _, err := s.Create(context.Background(), "u", time.Minute); err == nil || !strings.HasPrefix(err.Error(), "loginlink: create: ") {
		t.Fatalf("Create on a closed database: %v", err)
	}
}

// Requests racing with one link from two pools (two replicas, or the server and
// another process on one SQLite file): exactly one signs in.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		pools := []*loginlink.Store{newStore(t, open(), c), loginlink.New(open(), loginlink.Config{Now: c.Now})}
		for _, racers := range []int{2, 2, 2, 16} {
			tok := create(t, pools[0], "racer", time.Minute)
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				won     atomic.Int32
				refused atomic.Int32
			)
			for i := range racers {
				wg.Go(func() {
					<-start
					user, err := pools[i%2].Consume(context.Background(), tok)
					switch {
					case err == nil && user == "racer":
						won.Add(1)
					case errors.Is(err, loginlink.ErrInvalid):
						refused.Add(1)
					default:
						t.Errorf("racer %d: %q, %v", i, user, err)
					}
				})
			}
			close(start)
			wg.Wait()
			if won.Load() != 1 || refused.Load() != int32(racers-1) {
				t.Fatalf("%d racers: %d won, %d refused; want 1 and %d", racers, won.Load(), refused.Load(), racers-1)
			}
		}
	})
}

// The table holds the token's SHA-256, never the token; used_at records the use.
func TestStoredHashed(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		db := open()
		s := newStore(t, db, c)
		tok := create(t, s, "hashed-user", 15*time.Minute)
		type row struct {
			Hash      string     `db:"hash"`
			UserID    string     `db:"user_id"`
			CreatedAt sqldb.Time `db:"created_at"`
			ExpiresAt sqldb.Time `db:"expires_at"`
			UsedAt    sqldb.Time `db:"used_at"`
		}
		read := func() row {
			t.Helper()
			var rows []row
			if err := db.Select(&rows, `SELECT hash, user_id, created_at, expires_at, used_at FROM rr_login_links`); err != nil || len(rows) != 1 {
				t.Fatalf("rows %+v, %v; want one", rows, err)
			}
			return rows[0]
		}
		sum := sha256.Sum256([]byte(tok))
		r := read()
		if r.Hash != hex.EncodeToString(sum[:]) || r.UserID != "hashed-user" || !r.UsedAt.IsZero() ||
			!r.CreatedAt.Equal(c.Now()) || !r.ExpiresAt.Equal(c.Now().Add(15*time.Minute)) {
			t.Fatalf("row %+v", r)
		}
		var n int
		if err := db.Get(&n, db.Rebind(`SELECT COUNT(*) FROM rr_login_links WHERE hash = ? OR user_id = ?`), tok, tok); err != nil || n != 0 {
			t.Fatalf("%d rows hold the raw token (%v)", n, err)
		}
		c.Add(time.Minute)
		if _, err := s.Consume(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		if r := read(); !r.UsedAt.Equal(c.Now()) {
			t.Fatalf("used_at %v, want %v", r.UsedAt, c.Now())
		}
	})
}

func TestCreateValidates(t *testing.T) {
	t.Parallel()
	s := newStore(t, testenv.SQLite(t), newClock())
	for _, tc := range []struct {
		user string
		ttl  time.Duration
	}{
		{"", time.Minute},
		{"a\x00b", time.Minute},
		{"\xff", time.Minute},
		{"u", 0},
		{"u", -time.Second},
		{"u", loginlink.MaxTTL + time.Microsecond},
	} {
		if tok, _, err := s.Create(t.Context(), tc.user, tc.ttl); err == nil || tok != "" {
			t.Errorf("Create(%q, %s) = %q, %v; want an error", tc.user, tc.ttl, tok, err)
		}
	}
	if _, _, err := s.Create(t.Context(), "u", loginlink.MaxTTL); err != nil {
		t.Errorf("Create with MaxTTL: %v", err)
	}
}

// Create deletes links that expired more than Retention ago, used or not.
func TestPrune(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		c := newClock()
		db := open()
		s := newStore(t, db, c)
		used := create(t, s, "old", time.Minute)
		if _, err := s.Consume(t.Context(), used); err != nil {
			t.Fatal(err)
		}
		create(t, s, "old", time.Minute)
		c.Add(time.Minute + loginlink.Retention - time.Second)
		create(t, s, "recent", time.Minute) // the old ones expired less than Retention ago
		count := func() (n int) {
			t.Helper()
			if err := db.Get(&n, `SELECT COUNT(*) FROM rr_login_links`); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(); n != 3 {
			t.Fatalf("%d rows, want 3", n)
		}
		c.Add(2 * time.Second)
		create(t, s, "new", time.Minute)
		if n := count(); n != 2 {
			t.Fatalf("%d rows after the old links' retention, want 2 (recent, new)", n)
		}
	})
}

func TestBootstrapIdempotent(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, open func() *sqlx.DB) {
		db := open()
		s := newStore(t, db, newClock())
		tok := create(t, s, "u", time.Minute)
		var wg sync.WaitGroup
		for _, other := range []*sqlx.DB{db, open(), open()} {
			wg.Go(func() {
				if err := loginlink.New(other, loginlink.Config{}).Bootstrap(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if _, err := s.Consume(t.Context(), tok); err != nil {
			t.Fatalf("the link after bootstrapping again: %v", err)
		}
	})
}
