package apikey_test

import (
	"context"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
)

// rotateWithGrace stores an active key for user and rotates it with grace at
// now; it returns the old raw key, the old key as it now is, and the new raw key.
func rotateWithGrace(t *testing.T, s apikey.Store, user string, grace time.Duration) (oldRaw string, old apikey.Key, newRaw string) {
	t.Helper()
	ctx := context.Background()
	oldRaw, k, err := apikey.New("rr_live_", user, "gold", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	newRaw, next, err := apikey.New("rr_live_", "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if old, err = s.Rotate(ctx, user, &next, now, grace); err != nil {
		t.Fatal(err)
	}
	return oldRaw, old, newRaw
}

// An expiring key authenticates until its ExpiresAt, by the Authenticator's
// clock, and is refused from then on like a revoked key: also when its cache
// entry would live far longer (the channel is up, the TTL a day), and with no
// store announcement at that moment.
func TestExpiringKeyRefusedAtExpiresAt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		cache apikey.CacheConfig
	}{
		{"cache", apikey.CacheConfig{TTL: 24 * time.Hour}},
		{"no cache", apikey.CacheConfig{Size: -1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ms := memstore.New()
			s := &watchedStore{Store: ms}
			oldRaw, old, newRaw := rotateWithGrace(t, ms, "u1", time.Hour)
			clk := newClock()
			cfg := apikey.Config{Now: clk.Now, Cache: c.cache}
			cfg.Cache.Now = clk.Now
			a := apikey.NewAuthenticator(s, cfg)
			a.SetChannel(true)

			p, err := a.Authenticate(context.Background(), oldRaw)
			if err != nil {
				t.Fatalf("the expiring key before its ExpiresAt: %v", err)
			}
			want := apikey.Principal{KeyID: old.ID, UserID: "u1", Hash: old.Hash, Plan: "gold", QuotaID: old.ID, ExpiresAt: now.Add(time.Hour)}
			if p != want {
				t.Errorf("principal of the expiring key = %+v, want %+v", p, want)
			}
			mustAuth(t, a, newRaw, "u1")
			clk.Add(time.Hour - time.Microsecond)
			mustAuth(t, a, oldRaw, "u1")
			before := s.lookups.Load()

			clk.Add(time.Microsecond) // ExpiresAt
			mustRefuse(t, a, oldRaw, apikey.ErrRevoked)
			mustRefuse(t, a, oldRaw, apikey.ErrInvalid)
			mustAuth(t, a, newRaw, "u1")
			if c.cache.Size >= 0 {
				// One lookup found the key expired; the refusal is cached.
				if n := s.lookups.Load() - before; n != 1 {
					t.Errorf("%d lookups after the expiry, want 1", n)
				}
				if st := a.Stats(); st.NegativeHits == 0 {
					t.Errorf("the expired key's refusal was not cached: %+v", st)
				}
			}
		})
	}
}

// The cache never serves an expiring key's entry past ExpiresAt, even when the
// entry was filled a moment before it.
func TestCacheEntryDiesWithExpiresAt(t *testing.T) {
	t.Parallel()
	ms := memstore.New()
	oldRaw, _, _ := rotateWithGrace(t, ms, "u1", time.Second)
	clk := newClock()
	clk.Add(time.Second - time.Nanosecond)
	a := apikey.NewAuthenticator(ms, apikey.Config{Now: clk.Now, Cache: apikey.CacheConfig{Now: clk.Now, TTL: time.Hour}})
	a.SetChannel(true)
	mustAuth(t, a, oldRaw, "u1")
	clk.Add(time.Nanosecond)
	mustRefuse(t, a, oldRaw, apikey.ErrRevoked)
}

// Retire changes a key's plan and quota under the cache: the store announces it,
// and the next request carries the new plan, quota and expiry.
func TestCacheSeesRetire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := memstore.New()
	raw, k, err := apikey.New("rr_live_", "u1", "gold", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	a := apikey.NewAuthenticator(ms, apikey.Config{Now: clk.Now, Cache: apikey.CacheConfig{Now: clk.Now}})
	a.SetChannel(true)
	mustAuth(t, a, raw, "u1")
	if err := ms.Retire(ctx, k.ID, "platinum", "q_next", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate(ctx, raw)
	if err != nil || p.Plan != "platinum" || p.QuotaID != "q_next" || !p.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("after Retire: %+v, %v; want plan platinum, quota q_next, expiring at %v", p, err, now.Add(time.Hour))
	}
}

func TestKeyStatusAt(t *testing.T) {
	t.Parallel()
	exp := now.Add(time.Hour)
	for _, c := range []struct {
		name     string
		k        apikey.Key
		at       time.Time
		expiring bool
		want     apikey.Status
	}{
		{"active", apikey.Key{Status: apikey.StatusActive}, now, false, apikey.StatusActive},
		{"expiring", apikey.Key{Status: apikey.StatusActive, ExpiresAt: exp}, now, true, apikey.StatusExpiring},
		{"expired", apikey.Key{Status: apikey.StatusActive, ExpiresAt: exp}, exp, true, apikey.StatusRevoked},
		{"revoked", apikey.Key{Status: apikey.StatusRevoked}, now, false, apikey.StatusRevoked},
		{"revoked while expiring", apikey.Key{Status: apikey.StatusRevoked, ExpiresAt: exp}, now, false, apikey.StatusRevoked},
	} {
		if got := c.k.StatusAt(c.at); got != c.want || c.k.Expiring() != c.expiring {
			t.Errorf("%s: StatusAt = %s, Expiring = %v; want %s, %v", c.name, got, c.k.Expiring(), c.want, c.expiring)
		}
	}
}
