package tollgate

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultFlushInterval is how often a gate writes what it records in memory.
const DefaultFlushInterval = time.Second

// recorder collects, between flushes, when each key was last served. Writing it
// once a flush instead of once a request keeps the database off the hot path.
type recorder struct {
	mu   sync.Mutex
	used map[string]time.Time
}

func (r *recorder) note(keyID string, at time.Time) {
	r.mu.Lock()
	if at.After(r.used[keyID]) {
		r.used[keyID] = at
	}
	r.mu.Unlock()
}

// take returns what was recorded since the last take and starts afresh.
func (r *recorder) take() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.used) == 0 {
		return nil
	}
	used := r.used
	r.used = make(map[string]time.Time, len(used))
	return used
}

// restore puts back what a failed flush could not write, for the next one.
func (r *recorder) restore(used map[string]time.Time) {
	for id, at := range used {
		r.note(id, at)
	}
}

// loop flushes every interval until stop is closed, then flushes once more.
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
			g.flush(ctx)
			cancel()
		}
	}
}

// flush writes the keys' last use. A failure keeps it for the next flush.
func (g *Gate) flush(ctx context.Context) error {
	used := g.usage.take()
	if used == nil {
		return nil
	}
	if err := g.keys.Touch(ctx, used); err != nil {
		g.usage.restore(used)
		g.log.LogAttrs(ctx, slog.LevelWarn, "tollgate: could not record when keys were last used; will retry",
			slog.Int("keys", len(used)), slog.String("err", err.Error()))
		return err
	}
	return nil
}

// Close stops the gate's background work and writes what it still holds in
// memory (when keys were last used). Requests the gate serves after Close are
// still checked and counted, but their use is no longer recorded. Close is safe
// to call more than once; ctx bounds the final write.
func (g *Gate) Close(ctx context.Context) error {
	g.closeOnce.Do(func() { close(g.stop) })
	<-g.done
	return g.flush(ctx)
}
