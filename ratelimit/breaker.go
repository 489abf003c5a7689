package ratelimit

import (
	"fmt"
	"sync/atomic"
	"time"
)

// The store breaker: after breakerThreshold consecutive store errors the Limiter
// stops asking the store for breakerCooldown and applies the store error policy
// at once, so that an unreachable Redis costs requests no time; then a single
// request probes the store, and one success closes the breaker.
const (
	breakerThreshold = 3
	breakerCooldown  = time.Second
)

// errBreakerOpen is the Result.Err of requests decided while the breaker is open.
// It is made once, so an outage costs the hot path no allocation.
var errBreakerOpen = fmt.Errorf("%w: store not asked: it failed repeatedly, next probe within 1s", ErrUnavailable)

// breaker counts consecutive store failures. Safe for concurrent use; the hot
// path (closed breaker, store healthy) only reads.
type breaker struct {
	failures  atomic.Int64
	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
}

// allow reports whether the store may be asked at now. When the cooldown is over,
// exactly one caller is let through as the probe and the breaker stays open for
// the others for another cooldown.
func (b *breaker) allow(now time.Time) bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if now.UnixNano() < until {
		return false
	}
	return b.openUntil.CompareAndSwap(until, now.Add(breakerCooldown).UnixNano())
}

// success closes the breaker.
func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
}

// failure counts a store error at now and opens the breaker at the threshold.
func (b *breaker) failure(now time.Time) {
	if b.failures.Add(1) >= breakerThreshold {
		b.openUntil.Store(now.Add(breakerCooldown).UnixNano())
	}
}
