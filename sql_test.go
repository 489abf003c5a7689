package tollgate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
)

// failingPut is a quota store whose Put fails after doing its work, as a database
// would that breaks before the commit.
type failingPut struct{ quota.Store }

func (f failingPut) Put(ctx context.Context, id string, limit int64, start time.Time) error {
	if err := f.Store.Put(ctx, id, limit, start); err != nil {
		return err
	}
	return errors.New("connection reset")
}

// On the SQL stores, Gate.Bootstrap prepares both stores' schema in one call and
// Issue commits the revocation, the key and its quota together, or nothing.
func TestSQLStores(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		keys, quotas := aksql.New(db, aksql.Config{}), qsql.New(db, qsql.Config{})
		g, err := tollgate.New(tollgate.Stores{Keys: keys, Quotas: quotas}, testPlans(), tollgate.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := g.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
		}
		raw, k, err := g.Issue(ctx, "sam", "silver", 0, "first", 0)
		if err != nil {
			t.Fatal(err)
		}
		h := g.Require("silver")(ok)
		if a := call(h, raw); a.status != 200 || a.header.Get("X-Quota-Remaining") != "2" {
			t.Fatalf("a key issued on SQL: %d %q", a.status, a.header.Get("X-Quota-Remaining"))
		}

		broken, err := tollgate.New(tollgate.Stores{Keys: keys, Quotas: failingPut{quotas}}, testPlans(), tollgate.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := broken.Issue(ctx, "sam", "gold", 0, "second", 0); err == nil {
			t.Fatal("Issue succeeded although the quota could not be set")
		}
		list, err := keys.ListByUser(ctx, "sam")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != k.ID || !list[0].Active() {
			t.Fatalf("after a failed Issue the user has %+v; want the first key alone, still active", list)
		}
		if a := call(h, raw); a.status != 200 {
			t.Fatalf("the first key after the failed Issue: %d", a.status)
		}
	})
}
