package quota

// Queued returns how many Takes began waiting for the reservation of quota id in
// flight (0 when there is none).
func (l *Leases) Queued(id string) int {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.leases[id]; e != nil && e.res != nil {
		return e.res.waiters
	}
	return 0
}

// SameShard reports whether quotas a and b share a shard lock.
func (l *Leases) SameShard(a, b string) bool { return l.shard(a) == l.shard(b) }

// LeaseSize returns the size of quota id's lease: its unspent calls right after
// its last reservation.
func (l *Leases) LeaseSize(id string) int64 {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.leases[id]; e != nil {
		return e.size
	}
	return 0
}
