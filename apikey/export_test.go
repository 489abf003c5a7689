package apikey

import "encoding/hex"

// FlightWaiters returns how many misses wait for the lookup of hash in flight,
// or -1 when none is in flight.
func FlightWaiters(a *Authenticator, hash string) int {
	c := a.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	for sum, f := range c.flights {
		if hex.EncodeToString(sum[:]) == hash {
			return f.waiters
		}
	}
	return -1
}
