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

	_, k, _ := apikey.New("user_42", "pro", 10000, now)
	k.CallsUsed = 120
	if err := s.Create(ctx, &k); err != nil {
		panic(err)
	}
	_, second, _ := apikey.New("user_42", "pro", 10000, now)
	fmt.Println(s.Create(ctx, &second))

	// Rotation keeps the plan, the limit and the usage of the cycle.
	_, next, _ := apikey.New("", "", 0, now)
	old, _ := s.Rotate(ctx, "user_42", &next, now.Add(time.Hour))
	fmt.Println(old.Status, next.Status, next.Plan, next.MonthlyCallLimit, next.CallsUsed)
	// Output:
	// apikey: user already has an active key
	// revoked active pro 10000 120
}
