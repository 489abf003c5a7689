package apikey_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// hang bounds waits for goroutines: it guards against a test that would hang,
// and asserts nothing about speed.
const hang = time.Minute

// newClock returns a settable clock for the cache, at now.
func newClock() *testenv.Clock { return testenv.NewClock(now) }

// watchedStore is a memstore whose lookups are counted; it implements
// apikey.Changes (memstore's Watch), so an Authenticator watches it.
type watchedStore struct {
	*memstore.Store
	lookups atomic.Int32
}

func (s *watchedStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	s.lookups.Add(1)
	return s.Store.ByHash(ctx, hash)
}

// gatedStore holds each lookup, after it read the key, until release is closed,
// the lookup's own gate is, or its context ends. It does not implement
// apikey.Changes.
type gatedStore struct {
	apikey.Store
	calls   atomic.Int32
	entered chan chan struct{} // each lookup's own gate, once it has read
	release chan struct{}
}

func newGatedStore(s apikey.Store) *gatedStore {
	return &gatedStore{Store: s, entered: make(chan chan struct{}, 64), release: make(chan struct{})}
}

func (s *gatedStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	k, err := s.Store.ByHash(ctx, hash)
	s.calls.Add(1)
	gate := make(chan struct{})
	s.entered <- gate
	select {
	case <-s.release:
		return k, err
	case <-gate:
		return k, err
	case <-ctx.Done():
		return apikey.Key{}, ctx.Err()
	}
}

// waitEntered waits for the store's next lookup to begin and returns its gate.
func (s *gatedStore) waitEntered(t *testing.T) (gate chan struct{}) {
	t.Helper()
	select {
	case gate = <-s.entered:
		return gate
	case <-time.After(hang):
		t.Fatal("no lookup reached the store")
		return nil
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", hang, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// result is what an Authenticate in a goroutine returned.
type result struct {
	p   apikey.Principal
	err error
}

func authenticateAsync(ctx context.Context, a *apikey.Authenticator, raw string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		p, err := a.Authenticate(ctx, raw)
		ch <- result{p, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hang):
		t.Fatal("Authenticate did not return")
		return result{}
	}
}

func mustAuth(t *testing.T, a *apikey.Authenticator, raw, user string) {
	t.Helper()
	p, err := a.Authenticate(context.Background(), raw)
	if err != nil || p.UserID != user {
		t.Fatalf("Authenticate = %+v, %v; want %s", p, err, user)
	}
}

func mustRefuse(t *testing.T, a *apikey.Authenticator, raw string, want error) {
	t.Helper()
	p, err := a.Authenticate(context.Background(), raw)
	if !errors.Is(err, want) || p != (apikey.Principal{}) {
		t.Fatalf("Authenticate = %+v, %v; want %v", p, err, want)
	}
}

func TestCacheHitsDoNotReachTheStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := &countingStore{Store: f.store}
	a := apikey.NewAuthenticator(s, apikey.Config{})
	for range 10 {
		mustAuth(t, a, f.gold, "u-gold")
	}
	mustAuth(t, a, " "+f.gold+"\t", "u-gold") // the same key, padded
	if n := s.lookups.Load(); n != 1 {
		t.Errorf("%d store lookups for 11 requests with one key, want 1", n)
	}
	want := apikey.CacheStats{Hits: 10, Misses: 1, Lookups: 1, Entries: 1}
	if got := a.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	// Malformed values are refused before the cache and count nowhere.
	mustRefuse(t, a, "", apikey.ErrMissing)
	mustRefuse(t, a, "bad key", apikey.ErrInvalid)
	if got := a.Stats(); got != want {
		t.Errorf("Stats after malformed keys = %+v, want %+v", got, want)
	}
}

// TestCacheForgetsWhatTheStoreAnnounces: with the channel up and the clock
// stopped, nothing ages out, so only the store's announcements (Changes, which
// NewAuthenticator watches) make the cache drop a key.
func TestCacheForgetsWhatTheStoreAnnounces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := memstore.New()
	f := newFixture(t, ms)
	s := &watchedStore{Store: ms}
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Now: newClock().Now}})
	a.SetChannel(true)

	// Revoke.
	mustAuth(t, a, f.gold, "u-gold")
	mustAuth(t, a, f.gold, "u-gold")
	if err := ms.Revoke(ctx, f.goldKey.ID, "leaked", now); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, f.gold, apikey.ErrRevoked)
	mustRefuse(t, a, f.gold, apikey.ErrRevoked) // the revocation is cached too
	if n := s.lookups.Load(); n != 2 {
		t.Errorf("%d lookups, want 2: one before the revocation, one after", n)
	}

	// Rotate: the old key is refused at once, the new one served.
	mustAuth(t, a, f.rotated, "u-rot")
	raw, next, err := apikey.New("rr_live_", "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Rotate(ctx, "u-rot", &next, now, 0); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, f.rotated, apikey.ErrRevoked)
	mustAuth(t, a, raw, "u-rot")

	// RevokeUser.
	mustAuth(t, a, f.free, "u-free")
	if _, err := ms.RevokeUser(ctx, "u-free", "closed", now); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, f.free, apikey.ErrRevoked)

	// Create: a hash cached as unknown is forgotten when a key gets it.
	raw, k, err := apikey.New("rr_live_", "u-new", "gold", now)
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, raw, apikey.ErrInvalid)
	if err := ms.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, raw, "u-new")
}

func TestNegativeCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := &countingStore{Store: f.store}
	clk := newClock()
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Now: clk.Now}})
	a.SetChannel(true)
	for range 5 {
		mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
	}
	for range 3 {
		mustRefuse(t, a, f.revoked, apikey.ErrRevoked)
	}
	if n := s.lookups.Load(); n != 2 {
		t.Errorf("%d lookups, want 2 (one a hash)", n)
	}
	if st := a.Stats(); st.NegativeHits != 6 || st.Hits != 0 || st.Misses != 2 {
		t.Errorf("Stats = %+v, want 6 negative hits, 2 misses", st)
	}
	// A flood of made-up keys costs one lookup per distinct key.
	before := s.lookups.Load()
	for range 3 {
		for i := range 100 {
			mustRefuse(t, a, fmt.Sprintf("rr_live_guess%d", i), apikey.ErrInvalid)
		}
	}
	if n := s.lookups.Load() - before; n != 100 {
		t.Errorf("%d lookups for 100 distinct keys sent 3 times, want 100", n)
	}
	// Unknown hashes age out after NegativeTTL.
	clk.Add(apikey.DefaultNegativeTTL - time.Nanosecond)
	mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
	if n := s.lookups.Load(); n != 102 {
		t.Errorf("%d lookups before NegativeTTL, want 102", n)
	}
	clk.Add(time.Nanosecond)
	mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
	if n := s.lookups.Load(); n != 103 {
		t.Errorf("%d lookups at NegativeTTL, want 103", n)
	}
}

// TestCacheTTLs walks an injected clock through the channel's states.
func TestCacheTTLs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := &countingStore{Store: f.store}
	clk := newClock()
	cfg := apikey.CacheConfig{TTL: 30 * time.Second, NegativeTTL: 5 * time.Second, FallbackTTL: time.Second, Now: clk.Now}
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: cfg})
	lookups := int32(0)
	step := func(what string, d time.Duration, wantLookup bool) {
		t.Helper()
		clk.Add(d)
		mustAuth(t, a, f.gold, "u-gold")
		if wantLookup {
			lookups++
		}
		if n := s.lookups.Load(); n != lookups {
			t.Fatalf("%s: %d lookups, want %d", what, n, lookups)
		}
	}

	// The channel starts down: FallbackTTL.
	if a.Stats().ChannelUp {
		t.Fatal("a new Authenticator's channel is up")
	}
	step("first", 0, true)
	step("down, just before FallbackTTL", time.Second-time.Nanosecond, false)
	step("down, at FallbackTTL", time.Nanosecond, true)

	// Up: an entry read while the channel was down keeps FallbackTTL...
	a.SetChannel(true)
	step("up, an entry from before", time.Second, true)
	// ...one read while it is up lives TTL.
	step("up, 29 s", 29*time.Second, false)
	a.SetChannel(true) // no change of state: entries keep their TTL
	step("up, just before TTL", time.Second-time.Nanosecond, false)
	step("up, at TTL", time.Nanosecond, true)

	// Down again: entries older than FallbackTTL are stale at once.
	step("up, 2 s", 2*time.Second, false)
	a.SetChannel(false)
	step("down: a 2 s old entry", 0, true)
	// Back up: the entry read while down still has FallbackTTL.
	a.SetChannel(true)
	step("up again, 0.5 s", 500*time.Millisecond, false)
	step("up again, 1 s", 500*time.Millisecond, true)

	// A flap (down and up) between a read and its use shortens the entry too:
	// a notification may have been missed meanwhile.
	step("up, 2 s", 2*time.Second, false)
	a.SetChannel(false)
	a.SetChannel(true)
	step("after a flap", 0, true)

	// Unknown hashes: NegativeTTL while up, FallbackTTL while down.
	before := s.lookups.Load()
	refuse := func(what string, d time.Duration, want int32) {
		t.Helper()
		clk.Add(d)
		mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
		if n := s.lookups.Load() - before; n != want {
			t.Fatalf("%s: %d lookups, want %d", what, n, want)
		}
	}
	refuse("unknown", 0, 1)
	refuse("unknown, up, 4 s", 4*time.Second, 1)
	refuse("unknown, up, 5 s", time.Second, 2)
	a.SetChannel(false) // the entry read while up now lasts FallbackTTL
	refuse("unknown, down, 0.5 s", 500*time.Millisecond, 2)
	refuse("unknown, down, 1 s", 500*time.Millisecond, 3)
	refuse("unknown, down, just before 1 s", time.Second-time.Nanosecond, 3)
	refuse("unknown, down, at 1 s", time.Nanosecond, 4)
}

func TestStoreErrorIsNotCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	boom := errors.New("database unreachable")
	s := &countingStore{Store: f.store, err: boom}
	clk := newClock()
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Now: clk.Now}})
	for range 3 {
		if _, err := a.Authenticate(context.Background(), f.gold); !errors.Is(err, boom) || errors.Is(err, apikey.ErrInvalid) {
			t.Fatalf("Authenticate on a failing store = %v", err)
		}
	}
	if n := s.lookups.Load(); n != 3 {
		t.Errorf("%d lookups for 3 requests on a failing store, want 3: errors are not cached", n)
	}
	s.err = nil
	mustAuth(t, a, f.gold, "u-gold")
	mustAuth(t, a, f.gold, "u-gold")
	if n := s.lookups.Load(); n != 4 {
		t.Errorf("%d lookups, want 4", n)
	}
	// An aged entry is not served while the store fails: the request fails.
	clk.Add(apikey.DefaultFallbackTTL)
	s.err = boom
	if _, err := a.Authenticate(context.Background(), f.gold); !errors.Is(err, boom) {
		t.Fatalf("Authenticate on a failing store with a stale entry = %v", err)
	}
}

func TestForget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := &countingStore{Store: f.store}
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Now: newClock().Now}})
	a.SetChannel(true)
	warm := func() {
		mustAuth(t, a, f.gold, "u-gold")
		mustAuth(t, a, f.free, "u-free")
		mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
	}
	warm()
	if e := a.Stats().Entries; e != 3 {
		t.Fatalf("%d entries, want 3", e)
	}
	// Not hashes, or hashes of nothing cached: nothing happens.
	a.Forget("nonsense", "", apikey.Hash("rr_live_other"), apikey.Hash(f.gold)[:63]+"g")
	warm()
	if n := s.lookups.Load(); n != 3 {
		t.Errorf("%d lookups after forgetting nothing, want 3", n)
	}
	a.Forget(apikey.Hash(f.gold), apikey.Hash("rr_live_nope"))
	if e := a.Stats().Entries; e != 1 {
		t.Errorf("%d entries after forgetting 2, want 1", e)
	}
	warm()
	if n := s.lookups.Load(); n != 5 {
		t.Errorf("%d lookups after forgetting 2, want 5", n)
	}
	a.Forget() // everything
	if e := a.Stats().Entries; e != 0 {
		t.Errorf("%d entries after forgetting all, want 0", e)
	}
	warm()
	if n := s.lookups.Load(); n != 8 {
		t.Errorf("%d lookups after forgetting all, want 8", n)
	}
}

func TestCacheOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := &countingStore{Store: f.store}
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Size: -1}})
	a.SetChannel(true)
	a.Forget()
	a.Forget(apikey.Hash(f.gold))
	for range 3 {
		mustAuth(t, a, f.gold, "u-gold")
		mustRefuse(t, a, f.revoked, apikey.ErrRevoked)
		mustRefuse(t, a, "rr_live_nope", apikey.ErrInvalid)
	}
	if n := s.lookups.Load(); n != 9 {
		t.Errorf("%d lookups for 9 requests, want 9", n)
	}
	want := apikey.CacheStats{Misses: 9, Lookups: 9, ChannelUp: true}
	if got := a.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestCacheSize: the cache holds at most Size entries, and made-up keys cannot
// push out real ones.
func TestCacheSize(t *testing.T) {
	t.Parallel()
	ms := memstore.New()
	s := &countingStore{Store: ms}
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Size: 8, Now: newClock().Now}})
	a.SetChannel(true)
	var raws []string
	for i := range 10 {
		raw, k, err := apikey.New("rr_live_", fmt.Sprintf("u%d", i), "gold", now)
		if err != nil {
			t.Fatal(err)
		}
		if err := ms.Create(context.Background(), &k); err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
		mustAuth(t, a, raw, fmt.Sprintf("u%d", i))
	}
	if e := a.Stats().Entries; e > 8 {
		t.Errorf("%d entries, want at most 8", e)
	}
	before := s.lookups.Load()
	for i := range 200 {
		mustRefuse(t, a, fmt.Sprintf("rr_live_flood%d", i), apikey.ErrInvalid)
	}
	if e := a.Stats().Entries; e > 8 {
		t.Errorf("%d entries after a flood, want at most 8", e)
	}
	mustAuth(t, a, raws[9], "u9")
	if n := s.lookups.Load() - before; n != 200 {
		t.Errorf("%d lookups, want 200: the flood pushed the last real key out", n)
	}
}

func TestConcurrentMissesShareALookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	s := newGatedStore(f.store)
	a := apikey.NewAuthenticator(s, apikey.Config{})
	const n = 8
	results := make([]<-chan result, n)
	results[0] = authenticateAsync(context.Background(), a, f.gold)
	s.waitEntered(t)
	for i := 1; i < n; i++ {
		results[i] = authenticateAsync(context.Background(), a, f.gold)
	}
	hash := apikey.Hash(f.gold)
	waitFor(t, "the misses to join the lookup", func() bool { return apikey.FlightWaiters(a, hash) == n-1 })
	close(s.release)
	for _, ch := range results {
		if r := receive(t, ch); r.err != nil || r.p.UserID != "u-gold" {
			t.Errorf("Authenticate = %+v, %v", r.p, r.err)
		}
	}
	if c := s.calls.Load(); c != 1 {
		t.Errorf("%d lookups for %d concurrent misses, want 1", c, n)
	}
	if st := a.Stats(); st.Misses != n || st.Lookups != 1 {
		t.Errorf("Stats = %+v, want %d misses, 1 lookup", st, n)
	}
}

// TestSharedLookupAndContexts: a miss waiting for another's lookup gives up when
// its own context ends, and looks up on its own when the other's context ended.
func TestSharedLookupAndContexts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	hash := apikey.Hash(f.gold)

	t.Run("follower's context ends", func(t *testing.T) {
		s := newGatedStore(f.store)
		a := apikey.NewAuthenticator(s, apikey.Config{})
		leader := authenticateAsync(context.Background(), a, f.gold)
		s.waitEntered(t)
		ctx, cancel := context.WithCancel(context.Background())
		follower := authenticateAsync(ctx, a, f.gold)
		waitFor(t, "the follower to join", func() bool { return apikey.FlightWaiters(a, hash) == 1 })
		cancel()
		if r := receive(t, follower); !errors.Is(r.err, context.Canceled) || errors.Is(r.err, apikey.ErrInvalid) {
			t.Errorf("follower = %+v, %v; want its context's error", r.p, r.err)
		}
		close(s.release)
		if r := receive(t, leader); r.err != nil {
			t.Errorf("leader = %v", r.err)
		}
	})

	t.Run("leader's context ends", func(t *testing.T) {
		s := newGatedStore(f.store)
		a := apikey.NewAuthenticator(s, apikey.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		leader := authenticateAsync(ctx, a, f.gold)
		s.waitEntered(t)
		follower := authenticateAsync(context.Background(), a, f.gold)
		waitFor(t, "the follower to join", func() bool { return apikey.FlightWaiters(a, hash) == 1 })
		cancel()
		if r := receive(t, leader); !errors.Is(r.err, context.Canceled) {
			t.Errorf("leader = %+v, %v; want its context's error", r.p, r.err)
		}
		s.waitEntered(t) // the follower's own lookup
		close(s.release)
		if r := receive(t, follower); r.err != nil || r.p.UserID != "u-gold" {
			t.Errorf("follower = %+v, %v", r.p, r.err)
		}
		if c := s.calls.Load(); c != 2 {
			t.Errorf("%d lookups, want 2", c)
		}
	})
}

// TestForgetDuringLookup: a lookup that read a key before a Forget returns what
// it read to its caller but does not cache it, and a miss after the Forget does
// not share it.
func TestForgetDuringLookup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := memstore.New()
	f := newFixture(t, ms)
	s := newGatedStore(ms) // no Changes: the test calls Forget as a watcher would
	a := apikey.NewAuthenticator(s, apikey.Config{Cache: apikey.CacheConfig{Now: newClock().Now}})
	a.SetChannel(true)

	early := authenticateAsync(ctx, a, f.gold)
	earlyGate := s.waitEntered(t) // it has read the active key
	if err := ms.Revoke(ctx, f.goldKey.ID, "leaked", now); err != nil {
		t.Fatal(err)
	}
	a.Forget(f.goldKey.Hash)
	late := authenticateAsync(ctx, a, f.gold)
	lateGate := s.waitEntered(t) // a lookup of its own, not the early one's
	// The late lookup finishes first, then the early one, which must not
	// overwrite the late one's answer with what it read before the revocation.
	close(lateGate)
	if r := receive(t, late); !errors.Is(r.err, apikey.ErrRevoked) {
		t.Errorf("the lookup that began after the Forget = %+v, %v; want ErrRevoked", r.p, r.err)
	}
	close(earlyGate)
	if r := receive(t, early); r.err != nil {
		t.Errorf("the lookup that began before the revocation = %v, want the key it read", r.err)
	}
	// The late lookup's answer stays cached; the early one's was not.
	mustRefuse(t, a, f.gold, apikey.ErrRevoked)
	if c := s.calls.Load(); c != 2 {
		t.Errorf("%d lookups, want 2", c)
	}
}

// TestConcurrentAuthenticateAndRevoke races requests against revocations
// announced by the store: once Revoke has returned, no request that begins
// afterwards is let through.
func TestConcurrentAuthenticateAndRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := memstore.New()
	a := apikey.NewAuthenticator(ms, apikey.Config{})
	a.SetChannel(true)
	const users = 20
	raws := make([]string, users)
	keys := make([]apikey.Key, users)
	var revoked [users]atomic.Bool
	for i := range users {
		raw, k, err := apikey.New("rr_live_", fmt.Sprintf("u%d", i), "gold", now)
		if err != nil {
			t.Fatal(err)
		}
		if err := ms.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		raws[i], keys[i] = raw, k
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !done.Load() {
				i := rand.IntN(users)
				wasRevoked := revoked[i].Load()
				_, err := a.Authenticate(ctx, raws[i])
				switch {
				case err == nil && wasRevoked:
					t.Errorf("key %d served after its revocation returned", i)
				case err != nil && !errors.Is(err, apikey.ErrRevoked):
					t.Errorf("key %d: %v", i, err)
				}
			}
		})
	}
	for i := range users {
		time.Sleep(time.Millisecond) // let the readers cache the keys
		if err := ms.Revoke(ctx, keys[i].ID, "test", now); err != nil {
			t.Fatal(err)
		}
		revoked[i].Store(true)
	}
	done.Store(true)
	wg.Wait()
	for i := range users {
		mustRefuse(t, a, raws[i], apikey.ErrRevoked)
	}
}

// TestCacheHitAllocs: a cache hit, positive or negative, allocates nothing.
func TestCacheHitAllocs(t *testing.T) {
	f := newFixture(t, memstore.New())
	a := apikey.NewAuthenticator(f.store, apikey.Config{})
	a.SetChannel(true)
	ctx := context.Background()
	for _, raw := range []string{f.gold, f.revoked, "rr_live_nope"} {
		_, _ = a.Authenticate(ctx, raw)
		if n := testing.AllocsPerRun(100, func() { _, _ = a.Authenticate(ctx, raw) }); n != 0 {
			t.Errorf("%.1f allocations a cache hit, want 0", n)
		}
	}
}
