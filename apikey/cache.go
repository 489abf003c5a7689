package apikey

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Cache defaults (see CacheConfig).
const (
	DefaultCacheSize   = 65536
	DefaultTTL         = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
	DefaultFallbackTTL = time.Second
)

// CacheConfig sizes and times an Authenticator's cache of verified keys. The
// zero value is the default cache.
//
// The cache maps a key's hash to what the store said of it: the principal of an
// active key, "revoked", or "unknown". It never holds a store error, so a failing
// store is asked again by the next request. A revoked key is refused from the
// cache as it would be by the store; a key is never cached as valid after the
// store reported it revoked, and a key revoked later is forgotten when its store
// says so (Changes, Forget) or, at the latest, when its entry ages out. The entry
// of an expiring key is served only before its ExpiresAt, by the
// Authenticator's clock (Config.Now), whatever its age: from then on the key is
// looked up again, and refused.
//
// How long an entry is served depends on the change channel, the means by which
// the Authenticator learns of changes made by other processes (see SetChannel):
// while it is up, known keys last TTL and unknown hashes NegativeTTL; while it is
// down, no entry older than FallbackTTL is served, which bounds how long another
// process's revocation can go unseen. An entry cached while the channel was up
// falls back to FallbackTTL as soon as the channel goes down, and does not regain
// TTL when it comes back up (notifications may have been missed meanwhile).
type CacheConfig struct {
	// Size bounds the entries: three quarters for keys the store found (active
	// or revoked), a quarter for unknown hashes, so that a flood of made-up keys
	// cannot push the real ones out. Each unknown hash costs at most one store
	// lookup per NegativeTTL (FallbackTTL while the channel is down), however many
	// requests carry it, while it stays among the most recent unknown ones. A
	// known key's entry takes about half a kilobyte with its principal, so a full
	// default cache some 30 MB. Zero means DefaultCacheSize; a negative size
	// turns the cache off, and every Authenticate asks the store.
	Size int
	// TTL is how long a key the store found is served from the cache while the
	// change channel is up. Zero or less means DefaultTTL.
	TTL time.Duration
	// NegativeTTL is how long an unknown hash is refused from the cache while the
	// change channel is up. Zero or less means DefaultNegativeTTL.
	NegativeTTL time.Duration
	// FallbackTTL bounds every entry's life while the change channel is down.
	// Zero or less means DefaultFallbackTTL.
	FallbackTTL time.Duration
	// Now is the cache's clock; nil means time.Now.
	Now func() time.Time
}

// CacheStats are an Authenticator's counters since it was made, and its state.
type CacheStats struct {
	// Hits counts keys authenticated from the cache, NegativeHits keys refused
	// from it (unknown or revoked), and Misses the well-formed keys it could not
	// answer (all of them when the cache is off).
	Hits, NegativeHits, Misses uint64
	// Lookups counts store lookups made: at most Misses, fewer when concurrent
	// misses of one key shared a lookup.
	Lookups uint64
	// Entries is how many entries the cache holds, including any that aged out
	// and have not been replaced or pushed out yet.
	Entries int
	// ChannelUp is the change channel's state as SetChannel last set it.
	ChannelUp bool
}

// kind is what the store said of a hash.
type kind uint8

const (
	unknown kind = iota // ErrNotFound
	known               // an active key
	revoked             // a revoked key
)

// entry is a cached answer.
type entry struct {
	p     Principal // of a known key
	at    time.Time // when the lookup began
	state uint64    // the channel state when the lookup began
	kind  kind
}

// channelState is the Authenticator's change channel and its counters, kept
// whether or not there is a cache.
type channelState struct {
	// v is epoch<<1 | up: every change of state starts a new epoch, so an entry
	// knows whether the channel has been up throughout its life.
	v                              atomic.Uint64
	hits, negHits, misses, lookups atomic.Uint64
}

func (s *channelState) up() bool { return s.v.Load()&1 == 1 }

// cache holds the entries, in two LRUs: keys the store found and unknown hashes.
type cache struct {
	st                    *channelState
	known, unknown        *lru.Cache[[32]byte, entry]
	ttl, negTTL, fallback time.Duration
	now                   func() time.Time
	expiry                func() time.Time // the Authenticator's clock, for ExpiresAt
	// gen is bumped by every Forget: a lookup that began before it does not
	// cache what it read, which may predate the change. It changes under mu.
	gen atomic.Uint64
	// mu guards flights, and orders Forget against the insertions of lookups.
	mu      sync.Mutex
	flights map[[32]byte]*flight
}

// flight is one store lookup that concurrent misses of a hash share.
type flight struct {
	gen     uint64 // c.gen when it began: a miss after a Forget does not join it
	done    chan struct{}
	waiters int // misses that joined it; guarded by cache.mu
	e       entry
	err     error
}

// errLookupPanicked is what a lookup's followers get when the store panicked.
var errLookupPanicked = errors.New("apikey: the store panicked during a lookup")

func newCache(cfg CacheConfig, st *channelState, expiry func() time.Time) *cache {
	if cfg.Size < 0 {
		return nil
	}
	if cfg.Size == 0 {
		cfg.Size = DefaultCacheSize
	}
	orDefault := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	c := &cache{
		st:       st,
		ttl:      orDefault(cfg.TTL, DefaultTTL),
		negTTL:   orDefault(cfg.NegativeTTL, DefaultNegativeTTL),
		fallback: orDefault(cfg.FallbackTTL, DefaultFallbackTTL),
		now:      cfg.Now,
		expiry:   expiry,
		flights:  make(map[[32]byte]*flight),
	}
	if c.now == nil {
		c.now = time.Now
	}
	nUnknown := max(cfg.Size/4, 1)
	nKnown := max(cfg.Size-nUnknown, 1)
	// Plain LRUs, without expiry of their own: freshness is decided by fresh,
	// on the cache's clock and the channel's state, and an entry that aged out
	// keeps its slot until a lookup replaces it or newer entries push it out.
	// The size bounds the memory either way, and an LRU with expiry would read
	// the clock once more on every hit and keep sweeper goroutines that nothing
	// can stop.
	c.known, _ = lru.New[[32]byte, entry](nKnown) // errors only for a size < 1
	c.unknown, _ = lru.New[[32]byte, entry](nUnknown)
	return c
}

// fresh reports whether e may be served now. An expiring key's entry is not,
// from its ExpiresAt on.
func (c *cache) fresh(e entry) bool {
	if exp := e.p.ExpiresAt; !exp.IsZero() && !c.expiry().Before(exp) {
		return false
	}
	ttl := c.ttl
	if e.kind == unknown {
		ttl = c.negTTL
	}
	if s := c.st.v.Load(); s&1 == 0 || s != e.state {
		ttl = min(ttl, c.fallback)
	}
	age := c.now().Sub(e.at)
	return age >= 0 && age < ttl
}

// get returns the fresh entry of sum, counting a hit or a miss.
func (c *cache) get(sum [32]byte) (entry, bool) {
	e, ok := c.known.Get(sum)
	if !ok || !c.fresh(e) {
		e, ok = c.unknown.Get(sum)
		ok = ok && c.fresh(e)
	}
	switch {
	case !ok:
		c.st.misses.Add(1)
	case e.kind == known:
		c.st.hits.Add(1)
	default:
		c.st.negHits.Add(1)
	}
	return e, ok
}

// fill looks sum up in s, sharing the lookup with concurrent misses of sum that
// began after the last Forget, and caches the answer.
func (c *cache) fill(ctx context.Context, s Store, sum [32]byte) (entry, error) {
	gen := c.gen.Load()
	c.mu.Lock()
	if f := c.flights[sum]; f != nil && f.gen == gen {
		f.waiters++
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return entry{}, ctx.Err()
		}
		if f.err == nil || ctx.Err() != nil || !isContextErr(f.err) {
			return f.e, f.err
		}
		// The leader's context ended, not ours: look up on our own.
		return c.load(ctx, s, sum, gen)
	}
	f := &flight{gen: gen, done: make(chan struct{}), err: errLookupPanicked}
	c.flights[sum] = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.flights[sum] == f {
			delete(c.flights, sum)
		}
		c.mu.Unlock()
		close(f.done)
	}()
	f.e, f.err = c.load(ctx, s, sum, gen)
	return f.e, f.err
}

// load looks sum up in s and caches the answer unless a Forget came since gen.
func (c *cache) load(ctx context.Context, s Store, sum [32]byte, gen uint64) (entry, error) {
	state, at := c.st.v.Load(), c.now()
	c.st.lookups.Add(1)
	e, err := lookup(ctx, s, hex.EncodeToString(sum[:]), c.expiry)
	if err != nil {
		return entry{}, err
	}
	e.at, e.state = at, state
	into, other := c.known, c.unknown
	if e.kind == unknown {
		into, other = other, into
	}
	// Under mu, which Forget holds too: a Forget either came before (gen moved
	// on: the answer may predate the change and is not cached) or comes after
	// (it removes the entry), so no request that begins after a Forget returned
	// sees an answer read before it.
	c.mu.Lock()
	if c.gen.Load() == gen {
		other.Remove(sum)
		into.Add(sum, e)
	}
	c.mu.Unlock()
	return e, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Forget drops the cache's entries of the keys with those hashes (lower-case
// hex, as Key.Hash), so that their next Authenticate asks the store; a lookup in
// flight does not cache what it read. With no hashes it drops every entry: pass
// a change channel's "something may have changed" straight through. Strings that
// are not a hash are ignored. Watchers of a store that implements Changes call
// it (see NewAuthenticator); a change channel from other processes calls it too
// (see apikey/pqnotify).
func (a *Authenticator) Forget(hashes ...string) {
	c := a.cache
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1) // see load
	if len(hashes) == 0 {
		c.known.Purge()
		c.unknown.Purge()
		return
	}
	for _, h := range hashes {
		var sum [32]byte
		if len(h) != 2*len(sum) {
			continue
		}
		if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
			continue
		}
		c.known.Remove(sum)
		c.unknown.Remove(sum)
	}
}

// SetChannel tells the Authenticator whether its change channel is up: whether
// every change to the store, made by any process, reaches Forget within moments.
// While it is up, entries live TTL (NegativeTTL); while it is down, FallbackTTL.
// A new Authenticator's channel is down. Set it up only when that holds: on
// PostgreSQL while apikey/pqnotify listens (its onState is SetChannel); with a
// store that only this process changes and that implements Changes (memstore,
// a SQL database no other process writes). A SQLite file that another process
// also writes (an admin command) has no such channel: keep it down, and that
// process's changes are seen within FallbackTTL.
func (a *Authenticator) SetChannel(up bool) {
	for {
		cur := a.state.v.Load()
		if (cur&1 == 1) == up {
			return
		}
		next := (cur>>1 + 1) << 1
		if up {
			next |= 1
		}
		if a.state.v.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Stats returns the Authenticator's counters and cache state.
func (a *Authenticator) Stats() CacheStats {
	s := CacheStats{
		Hits:         a.state.hits.Load(),
		NegativeHits: a.state.negHits.Load(),
		Misses:       a.state.misses.Load(),
		Lookups:      a.state.lookups.Load(),
		ChannelUp:    a.state.up(),
	}
	if c := a.cache; c != nil {
		s.Entries = c.known.Len() + c.unknown.Len()
	}
	return s
}
