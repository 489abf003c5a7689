package apikey_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// fixture holds a store with one key per case Authenticate must tell apart.
type fixture struct {
	store apikey.Store
	// Raw keys: active on two plans, revoked, and a successor made by Rotate.
	gold, free, revoked, rotated string
	// The stored keys of gold, free and rotated, and the key rotated replaced.
	goldKey, freeKey, rotatedKey, rotatedFrom apikey.Key
}

func newFixture(t testing.TB, s apikey.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{store: s}
	add := func(user, plan string) (string, apikey.Key) {
		raw, k, err := apikey.New("rr_live_", user, plan, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		return raw, k
	}
	f.gold, f.goldKey = add("u-gold", "gold")
	f.free, f.freeKey = add("u-free", "free")
	var rk apikey.Key
	f.revoked, rk = add("u-gone", "gold")
	if err := s.Revoke(ctx, rk.ID, "test", now); err != nil {
		t.Fatal(err)
	}
	_, f.rotatedFrom = add("u-rot", "gold")
	raw, next, err := apikey.New("rr_live_", "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, "u-rot", &next, now, 0); err != nil {
		t.Fatal(err)
	}
	f.rotated, f.rotatedKey = raw, next
	return f
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	a := apikey.NewAuthenticator(f.store, apikey.Config{})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		raw  string
		want apikey.Principal
		err  error
	}{
		{"empty", "", apikey.Principal{}, apikey.ErrMissing},
		{"blank", " \t\r\n", apikey.Principal{}, apikey.ErrMissing},
		{"unknown key", "rr_live_nope", apikey.Principal{}, apikey.ErrInvalid},
		{"revoked key", f.revoked, apikey.Principal{}, apikey.ErrRevoked},
		{"gold key", f.gold, apikey.Principal{KeyID: f.goldKey.ID, UserID: "u-gold", Hash: f.goldKey.Hash, Plan: "gold", QuotaID: f.goldKey.ID}, nil},
		{"padded key", " \t" + f.free + " \n", apikey.Principal{KeyID: f.freeKey.ID, UserID: "u-free", Hash: f.freeKey.Hash, Plan: "free", QuotaID: f.freeKey.ID}, nil},
		// A rotated key's principal spends its predecessor's quota.
		{"rotated key", f.rotated, apikey.Principal{KeyID: f.rotatedKey.ID, UserID: "u-rot", Hash: f.rotatedKey.Hash, Plan: "gold", QuotaID: f.rotatedFrom.ID}, nil},
	} {
		p, err := a.Authenticate(ctx, c.raw)
		if c.err == nil && err != nil || c.err != nil && !errors.Is(err, c.err) || p != c.want {
			t.Errorf("%s: Authenticate = %+v, %v; want %+v, %v", c.name, p, err, c.want, c.err)
		}
	}
	// A revoked key is refused as invalid (403), and the error says why.
	_, err := a.Authenticate(ctx, f.revoked)
	if !errors.Is(err, apikey.ErrInvalid) || !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("revoked key: %v, want ErrInvalid and ErrRevoked", err)
	}
}

// noQuotaStore reports keys without a QuotaID, as a third-party store might.
type noQuotaStore struct{ apikey.Store }

func (s noQuotaStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	k, err := s.Store.ByHash(ctx, hash)
	k.QuotaID = ""
	return k, err
}

func TestAuthenticateQuotaIDDefaultsToKeyID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	p, err := apikey.NewAuthenticator(noQuotaStore{f.store}, apikey.Config{}).Authenticate(context.Background(), f.gold)
	if err != nil || p.QuotaID != f.goldKey.ID {
		t.Errorf("Authenticate = %+v, %v; want quota %s", p, err, f.goldKey.ID)
	}
}

// countingStore counts lookups and can fail them.
type countingStore struct {
	apikey.Store
	lookups atomic.Int32
	err     error
}

func (s *countingStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	s.lookups.Add(1)
	if s.err != nil {
		return apikey.Key{}, s.err
	}
	return s.Store.ByHash(ctx, hash)
}

// TestStoreFailure: a failing store is a failed dependency, answered 503 with
// Retry-After, and nothing of the store's error or the key reaches the answer.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	s := &countingStore{Store: memstore.New(), err: errors.New(`pq: relation "api_keys" does not exist at 10.1.2.3`)}
	a := apikey.NewAuthenticator(s, apikey.Config{})
	_, err := a.Authenticate(context.Background(), "rr_live_whatever")
	if err == nil || !strings.HasPrefix(err.Error(), "apikey: ") || errors.Is(err, apikey.ErrInvalid) || !errors.Is(err, s.err) {
		t.Fatalf("Authenticate on a failing store = %v, want the wrapped store error", err)
	}
	if strings.Contains(err.Error(), "rr_live_whatever") {
		t.Errorf("the error holds the raw key: %v", err)
	}
	status, detail, dependency := problem.For(err)
	if status != http.StatusServiceUnavailable || !dependency {
		t.Errorf("the store error answers %d (dependency %v), want 503 as a failed dependency", status, dependency)
	}
	for _, leak := range []string{"pq", "relation", "10.1.2.3", "api_keys", "rr_live_"} {
		if strings.Contains(detail, leak) {
			t.Errorf("the 503 detail %q leaks %q", detail, leak)
		}
	}
}

// TestErrorAnswers pins the HTTP answer of each sentinel through tollgate's
// problem table, which the gate writes.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	revoked := func() error {
		f := newFixture(t, memstore.New())
		_, err := apikey.NewAuthenticator(f.store, apikey.Config{}).Authenticate(context.Background(), f.revoked)
		return err
	}()
	for _, c := range []struct {
		err    error
		status int
		detail string
	}{
		{apikey.ErrMissing, 401, "Missing x-api-key"},
		{apikey.ErrInvalid, 403, "Invalid or revoked API key"},
		{apikey.ErrRevoked, 403, "Invalid or revoked API key"},
		{revoked, 403, "Invalid or revoked API key"},
		{apikey.ErrUpgradeRequired, 402, "Upgrade required for this endpoint"},
		{apikey.ErrNoActiveKey, 409, "No active key to rotate"},
		{apikey.ErrActiveExists, 409, "The user already has an active key"},
		{apikey.ErrNotFound, 404, "API key not found"},
	} {
		status, detail, dependency := problem.For(c.err)
		if status != c.status || detail != c.detail || dependency {
			t.Errorf("%v answers %d %q (dependency %v), want %d %q", c.err, status, detail, dependency, c.status, c.detail)
		}
	}
}

func TestMaxKeyLength(t *testing.T) {
	t.Parallel()
	s := &countingStore{Store: memstore.New()}
	for _, c := range []struct {
		max, n  int
		lookups int32
	}{
		{0, 256, 1}, {0, 257, 0}, {-1, 256, 1}, {-1, 257, 0}, {10, 10, 1}, {10, 11, 0},
	} {
		a := apikey.NewAuthenticator(s, apikey.Config{MaxKeyLength: c.max})
		before := s.lookups.Load()
		_, err := a.Authenticate(context.Background(), strings.Repeat("k", c.n))
		if !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("max %d, %d bytes: %v, want ErrInvalid", c.max, c.n, err)
		}
		if got := s.lookups.Load() - before; got != c.lookups {
			t.Errorf("max %d, %d bytes: %d store lookups, want %d", c.max, c.n, got, c.lookups)
		}
	}
}

// TestHostileValues sends hostile header values through Authenticate on each store.
func TestHostileValues(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) apikey.Store{
		"memstore": func(t *testing.T) apikey.Store { return memstore.New() },
		"sqlite": func(t *testing.T) apikey.Store {
			return bootstrapped(t, sqlstore.New(testenv.SQLite(t), sqlstore.Config{}))
		},
		"postgres": func(t *testing.T) apikey.Store {
			return bootstrapped(t, sqlstore.New(testenv.Postgres(t), sqlstore.Config{}))
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t))
			a := apikey.NewAuthenticator(f.store, apikey.Config{})
			for _, c := range []struct {
				name, value string
				want        error
			}{
				{"empty", "", apikey.ErrMissing},
				{"whitespace", " \t  ", apikey.ErrMissing},
				{"10 KB", strings.Repeat("A", 10<<10), apikey.ErrInvalid},
				{"10 KB after the prefix", "rr_live_" + strings.Repeat("x", 10<<10), apikey.ErrInvalid},
				{"non-ASCII", "rr_live_ключ🔑", apikey.ErrInvalid},
				{"valid key with a non-ASCII tail", f.gold + "é", apikey.ErrInvalid},
				{"valid key with an inner space", f.gold[:10] + " " + f.gold[10:], apikey.ErrInvalid},
				{"SQL text", "' OR 1=1 --", apikey.ErrInvalid},
				{"SQL after the prefix", "rr_live_' OR '1'='1", apikey.ErrInvalid},
				{"SQL statement", "x'; DROP TABLE api_keys; --", apikey.ErrInvalid},
				{"NUL byte", "rr_live_\x00abc", apikey.ErrInvalid},
				{"control characters", "\x1b[31mred", apikey.ErrInvalid},
				{"a hash instead of a key", apikey.Hash(f.gold), apikey.ErrInvalid},
			} {
				if p, err := a.Authenticate(context.Background(), c.value); !errors.Is(err, c.want) || p != (apikey.Principal{}) {
					t.Errorf("%s: Authenticate = %+v, %v; want %v", c.name, p, err, c.want)
				}
			}
			// The table survived the SQL text and still answers.
			if p, err := a.Authenticate(context.Background(), f.gold); err != nil || p.UserID != "u-gold" {
				t.Errorf("a valid key after the hostile ones: %+v, %v", p, err)
			}
		})
	}
}

func bootstrapped(t testing.TB, s *sqlstore.Store) *sqlstore.Store {
	t.Helper()
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}
