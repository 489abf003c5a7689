package keyprep_test

import (
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/internal/keyprep"
)

// A store completes a key before it writes it, and a rotation's successor from the
// key it replaces.
func Example() {
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	k := apikey.Key{ID: "key_a", UserID: "u1", Hash: apikey.Hash("tk_a"), Plan: "gold", CreatedAt: at}
	if err := keyprep.ForCreate(&k); err != nil {
		panic(err)
	}
	fmt.Println(k.Status, k.QuotaID, k.CreatedAt)

	next := apikey.Key{ID: "key_b", Hash: apikey.Hash("tk_b"), QuotaID: "ignored"}
	if err := keyprep.CheckNext(&next, at, 0); err != nil {
		panic(err)
	}
	keyprep.Successor(&next, k, at.Add(time.Hour))
	fmt.Println(next.UserID, next.Plan, next.Status, next.QuotaID, next.CreatedAt)

	fmt.Println(keyprep.ForCreate(&apikey.Key{UserID: "u1", CreatedAt: at}))
	// Output:
	// active key_a 2026-11-27 09:00:00.123456 +0000 UTC
	// u1 gold active key_a 2026-11-27 10:00:00.123456 +0000 UTC
	// apikey: key has no hash
}
