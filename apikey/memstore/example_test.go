package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
)

func Example() {
	ctx := context.Background()
	s := memstore.New()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

	raw, k, _ := apikey.New("acme_", "user_42", "gold", now)
	if err := s.Create(ctx, &k); err != nil {
		panic(err)
	}
	fmt.Println(k.QuotaID == k.ID) // a new key spends a quota of its own

	// One active key per user.
	_, second, _ := apikey.New("acme_", "user_42", "gold", now)
	fmt.Println(s.Create(ctx, &second))

	// Authentication looks the raw key up by its hash.
	p, _ := apikey.NewAuthenticator(s, apikey.Config{}).Authenticate(ctx, raw)
	fmt.Println(p.UserID, p.Plan)

	// Rotation keeps the plan and the quota: the successor spends the old key's.
	_, next, _ := apikey.New("acme_", "", "", now)
	old, _ := s.Rotate(ctx, "user_42", &next, now.Add(time.Hour), 0)
	fmt.Println(old.Status, old.RevokeReason, next.Status, next.Plan, next.QuotaID == k.ID)

	// RevokeUser returns what it revoked, for the caller's caches.
	revoked, _ := s.RevokeUser(ctx, "user_42", "account closed", now.Add(2*time.Hour))
	fmt.Println(len(revoked), revoked[0].ID == next.ID, revoked[0].Status)
	// Output:
	// true
	// apikey: user already has an active key
	// user_42 gold
	// revoked rotated active gold true
	// 1 true revoked
}
