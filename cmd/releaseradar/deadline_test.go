package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type lazyKey struct{}

// TestLazyDeadline: the context reports its deadline and its parent's values,
// ends at its deadline, when its parent ends and when it is ended, whether or not
// anything armed it first, and the contexts derived from it follow it.
func TestLazyDeadline(t *testing.T) {
	t.Parallel()
	parent := context.WithValue(context.Background(), lazyKey{}, "v")

	t.Run("unarmed until waited on", func(t *testing.T) {
		c, end := withLazyDeadline(parent, time.Now().Add(time.Hour))
		defer end()
		if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("Deadline = %v, %v", d, ok)
		}
		if c.Value(lazyKey{}) != "v" || c.Err() != nil {
			t.Errorf("Value %v, Err %v", c.Value(lazyKey{}), c.Err())
		}
		if c.armed.Load() {
			t.Error("Deadline, Value and Err armed the timer")
		}
		select {
		case <-c.Done():
			t.Fatal("done an hour early")
		default:
		}
		if !c.armed.Load() || c.Value(lazyKey{}) != "v" {
			t.Error("Done did not arm, or the armed context lost the parent's values")
		}
	})

	t.Run("a passed deadline", func(t *testing.T) {
		for _, wait := range []bool{true, false} {
			c, end := withLazyDeadline(parent, time.Now().Add(-time.Second))
			if wait {
				<-c.Done()
			}
			if !errors.Is(c.Err(), context.DeadlineExceeded) {
				t.Errorf("wait %v: Err = %v", wait, c.Err())
			}
			<-c.Done()
			end()
		}
	})

	t.Run("the parent's earlier deadline", func(t *testing.T) {
		p, cancel := context.WithTimeout(parent, time.Minute)
		defer cancel()
		c, end := withLazyDeadline(p, time.Now().Add(time.Hour))
		defer end()
		if d, _ := c.Deadline(); time.Until(d) > time.Minute {
			t.Errorf("Deadline %v, after the parent's", d)
		}
	})

	t.Run("the parent ends", func(t *testing.T) {
		for _, armFirst := range []bool{true, false} {
			p, cancel := context.WithCancel(parent)
			c, end := withLazyDeadline(p, time.Now().Add(time.Hour))
			child, stopChild := context.WithCancel(context.WithValue(c, lazyKey{}, "child"))
			if armFirst {
				_ = c.Done()
			}
			cancel()
			<-c.Done()
			<-child.Done()
			if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
				t.Errorf("arm first %v: Err %v, child's %v", armFirst, c.Err(), child.Err())
			}
			stopChild()
			end()
		}
	})

	t.Run("end", func(t *testing.T) {
		for _, armFirst := range []bool{true, false} {
			c, end := withLazyDeadline(parent, time.Now().Add(time.Hour))
			if armFirst {
				_ = c.Done()
			}
			end()
			<-c.Done()
			if !errors.Is(c.Err(), context.Canceled) {
				t.Errorf("arm first %v: Err after end = %v", armFirst, c.Err())
			}
		}
	})

	t.Run("concurrent waiters", func(t *testing.T) {
		c, end := withLazyDeadline(parent, time.Now().Add(time.Hour))
		var wg sync.WaitGroup
		chans := make([]<-chan struct{}, 8)
		for i := range chans {
			wg.Go(func() { chans[i] = c.Done(); _ = c.Err(); _ = c.Value(lazyKey{}) })
		}
		wg.Wait()
		for _, ch := range chans[1:] {
			if ch != chans[0] {
				t.Fatal("two Done channels: armed twice")
			}
		}
		end()
		for _, ch := range chans {
			<-ch
		}
	})
}
