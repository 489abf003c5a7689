package tollgate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
)

// DefaultFlushInterval is how often a gate writes what it records in memory.
const DefaultFlushInterval = time.Second

// recorder collects, between flushes, when each key was last served and how many
// calls it served each minute. Writing that once a flush instead of once a request
// keeps the database off the hot path. It is sharded by key, so that requests of
// different keys do not wait on one lock.
type recorder struct {
	seed   maphash.Seed
	shards [16]recShard

	// pending is a batch of served calls whose write failed: the next flush
	// writes it again under the same name, so that a write whose outcome was
	// unknown counts once. Only the flush loop touches it.
	batch   string
	pending []entitlement.UsageRecord
}

type recShard struct {
	mu    sync.Mutex
	used  map[string]time.Time
	calls map[minuteKey]int64
	_     [64]byte // keep shards on their own cache lines
}

// minuteKey names a key's calls in one minute (unix seconds of its start).
type minuteKey struct {
	keyID, userID string
	minute        int64
}

func newRecorder() *recorder {
	r := &recorder{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].used = make(map[string]time.Time)
		r.shards[i].calls = make(map[minuteKey]int64)
	}
	return r
}

// note records that p's key served one call at at.
func (r *recorder) note(p apikey.Principal, at time.Time) {
	sh := &r.shards[maphash.String(r.seed, p.KeyID)%uint64(len(r.shards))]
	k := minuteKey{p.KeyID, p.UserID, at.Unix() - at.Unix()%60}
	sh.mu.Lock()
	if at.After(sh.used[p.KeyID]) {
		sh.used[p.KeyID] = at
	}
	sh.calls[k]++
	sh.mu.Unlock()
}

// take returns what was recorded since the last take and starts afresh.
func (r *recorder) take() (map[string]time.Time, []entitlement.UsageRecord) {
	var (
		used  map[string]time.Time
		calls []entitlement.UsageRecord
	)
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for id, at := range sh.used {
			if used == nil {
				used = make(map[string]time.Time)
			}
			used[id] = at
		}
		for k, n := range sh.calls {
			calls = append(calls, entitlement.UsageRecord{KeyID: k.keyID, UserID: k.userID, Bucket: time.Unix(k.minute, 0).UTC(), Calls: n})
		}
		if len(sh.used) > 0 {
			sh.used = make(map[string]time.Time, len(sh.used))
		}
		if len(sh.calls) > 0 {
			sh.calls = make(map[minuteKey]int64, len(sh.calls))
		}
		sh.mu.Unlock()
	}
	return used, calls
}

// restore puts back when keys were last used, for the next flush.
func (r *recorder) restore(used map[string]time.Time) {
	for id, at := range used {
		sh := &r.shards[maphash.String(r.seed, id)%uint64(len(r.shards))]
		sh.mu.Lock()
		if at.After(sh.used[id]) {
			sh.used[id] = at
		}
		sh.mu.Unlock()
	}
}

// loop flushes every interval until stop is closed.
func (g *Gate) loop(interval time.Duration) {
	defer close(g.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval*5)
			_ = g.flush(ctx)
			if err := g.leases.Expire(ctx, g.now()); err != nil {
				g.log.LogAttrs(ctx, slog.LevelWarn, "tollgate: could not give back idle quota leases; will retry",
					slog.String("err", err.Error()))
			}
			cancel()
		}
	}
}

// flush writes the calls served since the last flush to the ledger and the keys'
// last use to the key store. A failure keeps them for the next flush. Only the
// loop and Close (after the loop has stopped) call it.
func (g *Gate) flush(ctx context.Context) error {
	used, calls := g.usage.take()
	var errs []error
	if g.ledger != nil {
		if r := g.usage; len(calls) > 0 || r.pending != nil {
			if r.pending == nil {
				r.batch, r.pending = newBatch(), calls
				calls = nil
			}
			if err := g.ledger.Record(ctx, r.batch, r.pending); err != nil {
				errs = append(errs, err)
				g.log.LogAttrs(ctx, slog.LevelWarn, "tollgate: could not record served calls in the usage ledger; will retry",
					slog.Int("records", len(r.pending)), slog.String("err", err.Error()))
			} else {
				r.batch, r.pending = "", nil
			}
			// Calls served while a failed batch waits go into the next batch.
			if len(calls) > 0 {
				for _, c := range calls {
					g.usage.shardNote(c)
				}
			}
		}
	}
	if len(used) > 0 {
		if err := g.keys.Touch(ctx, used); err != nil {
			g.usage.restore(used)
			errs = append(errs, err)
			g.log.LogAttrs(ctx, slog.LevelWarn, "tollgate: could not record when keys were last used; will retry",
				slog.Int("keys", len(used)), slog.String("err", err.Error()))
		}
	}
	return errors.Join(errs...)
}

// shardNote puts a taken record back, for the next batch.
func (r *recorder) shardNote(c entitlement.UsageRecord) {
	sh := &r.shards[maphash.String(r.seed, c.KeyID)%uint64(len(r.shards))]
	sh.mu.Lock()
	sh.calls[minuteKey{c.KeyID, c.UserID, c.Bucket.Unix()}] += c.Calls
	sh.mu.Unlock()
}

// newBatch names a batch of usage records.
func newBatch() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "tg-" + hex.EncodeToString(b[:])
}

// Close stops the gate's background work, gives the unspent calls of its quota
// leases back to the quota store and writes what it still holds in memory (the
// calls served, when keys were last used). Call it once the server has stopped
// serving (after http.Server.Shutdown): requests served after Close are still
// checked and counted, from new leases that nothing gives back. Close is safe to
// call more than once; ctx bounds the final writes.
func (g *Gate) Close(ctx context.Context) error {
	g.closeOnce.Do(func() { close(g.stop) })
	<-g.done
	return errors.Join(g.leases.Close(ctx), g.flush(ctx))
}
