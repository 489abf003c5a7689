package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is a context with a deadline whose timer is armed only when
// something waits on it. Most requests are answered from memory (cached keys,
// leased quota, cached answers) and never wait on anything; context.WithTimeout
// would arm and stop a timer, and allocate three objects, for each of them. The
// first Done or Err that may need the timer arms an ordinary
// context.WithDeadline below this one, which from then on answers Done, Err and
// Value, so contexts derived from it attach to it as they would to any
// cancelable context.
type lazyDeadline struct {
	context.Context // the parent, until armed
	deadline        time.Time

	armed atomic.Bool // inner is set
	mu    sync.Mutex
	inner context.Context
	stop  context.CancelFunc
	ended bool // end was called
}

// withLazyDeadline returns a context that ends at the earlier of deadline and
// parent's end, and a function that ends it (call it when the request is done, as
// with context.WithDeadline's cancel).
func withLazyDeadline(parent context.Context, deadline time.Time) (*lazyDeadline, func()) {
	c := &lazyDeadline{Context: parent, deadline: deadline}
	return c, c.end
}

// arm starts the timer, once, and returns the context that holds it.
func (c *lazyDeadline) arm() context.Context {
	if c.armed.Load() {
		return c.inner
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.stop = context.WithDeadline(c.Context, c.deadline)
		if c.ended {
			c.stop()
		}
		c.armed.Store(true)
	}
	return c.inner
}

// end cancels the context, as a WithTimeout's cancel does, and stops its timer.
func (c *lazyDeadline) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.stop != nil {
		c.stop()
	}
}

func (c *lazyDeadline) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *lazyDeadline) Done() <-chan struct{} { return c.arm().Done() }

// Err answers without arming the timer while the deadline is ahead and the
// context was not ended: then no Done channel can have been closed yet.
func (c *lazyDeadline) Err() error {
	if !c.armed.Load() {
		c.mu.Lock()
		ended := c.ended
		c.mu.Unlock()
		if !ended && time.Now().Before(c.deadline) {
			return c.Context.Err()
		}
	}
	return c.arm().Err()
}

func (c *lazyDeadline) Value(key any) any {
	if c.armed.Load() {
		return c.inner.Value(key)
	}
	return c.Context.Value(key)
}
