package storetest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
	"github.com/releaseradar/tollgate/ratelimit/storetest"
)

// tenantStore is a Store of one's own: it keeps tenants apart in one shared
// store by prefixing their buckets.
type tenantStore struct {
	ratelimit.Store
	tenant string
}

func (s tenantStore) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	return s.Store.Take(ctx, s.tenant+"/"+bucket, n, rate)
}

// A store's test runs the suite on empty stores of its own kind:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, newStore)
//	}
//
// Here newStore builds the tenant store above; what the suite then checks is,
// for example, that each bucket counts its own hits up to the limit.
func ExampleRun() {
	newStore := func(t *testing.T) ratelimit.Store {
		return tenantStore{Store: memstore.New(), tenant: "acme"}
	}
	_ = func(t *testing.T) { storetest.Run(t, newStore) }

	s := newStore(nil)
	rate, _ := ratelimit.ParseRate("2-M")
	for _, bucket := range []string{"a", "a", "a", "b"} {
		w, err := s.Take(context.Background(), bucket, 1, rate)
		fmt.Println(bucket, w.Remaining, w.Reached, err)
	}
	// Output:
	// a 1 false <nil>
	// a 0 false <nil>
	// a 0 true <nil>
	// b 1 false <nil>
}
