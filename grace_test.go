package tollgate_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
)

// gracePlans are the plans of the grace tests: two paid plans whose burst rates
// and quotas differ, both generous enough in bursts not to get in the way.
func gracePlans() entitlement.Catalog {
	return entitlement.Catalog{
		"free":    {Name: "free", Rank: 0, Rate: "5-M"},
		"basic":   {Name: "basic", Rank: 1, MonthlyCallLimit: 10, Rate: "1000-M"},
		"premium": {Name: "premium", Rank: 2, MonthlyCallLimit: 100, Rate: "2000-M"},
	}
}

// graceGate is a gate on the wall clock (the clock by which expiring keys
// expire) and the stores it was given.
type graceGate struct {
	*tollgate.Gate
	keys   apikey.Store
	quotas quota.Store
}

func newGraceGate(t *testing.T, keys apikey.Store, quotas quota.Store) *graceGate {
	t.Helper()
	g, err := tollgate.New(tollgate.Stores{Keys: keys, Quotas: quotas}, gracePlans(), tollgate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return &graceGate{Gate: g, keys: keys, quotas: quotas}
}

func memGraceGate(t *testing.T) *graceGate {
	return newGraceGate(t, akmem.New(), qmem.New(qmem.Config{}))
}

// sqlGraceGate is a gate on the SQL stores of db, bootstrapped.
func sqlGraceGate(t *testing.T, db *sqlx.DB) *graceGate {
	g := newGraceGate(t, aksql.New(db, aksql.Config{}), qsql.New(db, qsql.Config{}))
	if err := g.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *graceGate) key(t *testing.T, raw string) apikey.Key {
	t.Helper()
	k, err := g.keys.ByHash(context.Background(), apikey.Hash(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// expectRemaining calls route with each key in turn and checks that every call
// is served and that the one quota they share counts them all.
func expectRemaining(t *testing.T, route http.Handler, from int, keys ...string) int {
	t.Helper()
	for i, raw := range keys {
		a := call(route, raw)
		want := strconv.Itoa(from - 1 - i)
		if a.status != 200 || a.header.Get("X-Quota-Remaining") != want {
			t.Fatalf("call %d (key %d): %d %q, remaining %q; want 200 and %s", i+1, i%2, a.status, a.detail, a.header.Get("X-Quota-Remaining"), want)
		}
	}
	return from - len(keys)
}

// During a rotation's grace both keys work and spend one quota, never a doubled
// one; the old key is refused from its ExpiresAt on, the new one served on.
func TestRotateWithGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := memGraceGate(t)
	route := g.Require("basic")(ok)
	oldRaw, _, err := g.Issue(ctx, "sam", "basic", 1000, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	left := expectRemaining(t, route, 1000, oldRaw, oldRaw)

	const grace = 400 * time.Millisecond
	start := time.Now()
	newRaw, next, err := g.Rotate(ctx, "sam", grace)
	if err != nil {
		t.Fatal(err)
	}
	old := g.key(t, oldRaw)
	if !old.Expiring() || old.ExpiresAt.Before(start.Add(grace).Truncate(time.Microsecond)) || old.ExpiresAt.After(time.Now().Add(grace)) {
		t.Fatalf("old key after Rotate with grace: %+v; want it expiring about %v from now", old, grace)
	}
	if next.QuotaID != old.QuotaID || next.Plan != "basic" {
		t.Errorf("successor %+v: want the old key's plan and quota", next)
	}
	if st := old.StatusAt(time.Now()); st != apikey.StatusExpiring {
		t.Errorf("the old key shows %s, want expiring", st)
	}
	// Both keys, one quota.
	left = expectRemaining(t, route, left, oldRaw, newRaw, oldRaw, newRaw)

	// Poll the old key: served before its ExpiresAt, refused (403) from then on.
	var refusedAt time.Time
	polls := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		before := time.Now()
		a := call(route, oldRaw)
		after := time.Now()
		switch a.status {
		case 200:
			if before.After(old.ExpiresAt) {
				t.Fatalf("the old key was served at %v, after its ExpiresAt %v", before, old.ExpiresAt)
			}
			left--
		case 403:
			if after.Before(old.ExpiresAt) {
				t.Fatalf("the old key was refused at %v, before its ExpiresAt %v", after, old.ExpiresAt)
			}
			if a.detail != "Invalid or revoked API key" {
				t.Errorf("the expired key's refusal says %q", a.detail)
			}
			refusedAt = after
		default:
			t.Fatalf("the old key during its grace: %d %q", a.status, a.detail)
		}
		polls++
		if !refusedAt.IsZero() {
			break
		}
	}
	if refusedAt.IsZero() || polls < 10 {
		t.Fatalf("after %d polls the old key was not refused (ExpiresAt %v)", polls, old.ExpiresAt)
	}
	t.Logf("the old key was served %d times in its grace and refused %v after its ExpiresAt", polls-1, refusedAt.Sub(old.ExpiresAt))
	if a := call(route, newRaw); a.status != 200 || a.header.Get("X-Quota-Remaining") != strconv.Itoa(left-1) {
		t.Errorf("the new key after the old one expired: %d, remaining %q; want 200 and %d", a.status, a.header.Get("X-Quota-Remaining"), left-1)
	}
}

// The quota is never doubled: many requests racing on both keys during the grace
// serve exactly the limit.
func TestRotateWithGraceExactness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := memGraceGate(t)
	route := g.Require("basic")(ok)
	oldRaw, _, err := g.Issue(ctx, "sam", "premium", 0, "", 0) // 100 calls
	if err != nil {
		t.Fatal(err)
	}
	newRaw, _, err := g.Rotate(ctx, "sam", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var served, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 400 {
		raw := oldRaw
		if i%2 == 1 {
			raw = newRaw
		}
		wg.Go(func() {
			switch a := call(route, raw); a.status {
			case 200:
				served.Add(1)
			case 429:
				refused.Add(1)
			default:
				t.Errorf("unexpected %d %q", a.status, a.detail)
			}
		})
	}
	wg.Wait()
	if served.Load() != 100 || refused.Load() != 300 {
		t.Fatalf("%d served and %d refused over two keys in grace, want 100 and 300", served.Load(), refused.Load())
	}
}

// Rotating again during a grace: the first key keeps its own expiry, and all
// three keys spend one quota.
func TestRotateAgainDuringGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := memGraceGate(t)
	route := g.Require("basic")(ok)
	first, _, err := g.Issue(ctx, "sam", "basic", 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := g.Rotate(ctx, "sam", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp := g.key(t, first).ExpiresAt
	third, _, err := g.Rotate(ctx, "sam", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.key(t, first).ExpiresAt; !got.Equal(exp) {
		t.Errorf("the first key's expiry moved from %v to %v", exp, got)
	}
	if got := g.key(t, second).ExpiresAt; !got.After(exp) {
		t.Errorf("the second key expires at %v, want after the first's %v", got, exp)
	}
	expectRemaining(t, route, 10, first, second, third)
	// Revocation takes every one of them at once.
	if n, err := g.RevokeUser(ctx, "sam", "closed"); err != nil || n != 3 {
		t.Fatalf("RevokeUser = %d, %v; want 3", n, err)
	}
	for i, raw := range []string{first, second, third} {
		if a := call(route, raw); a.status != 403 {
			t.Errorf("key %d after RevokeUser: %d, want 403", i+1, a.status)
		}
	}
}

// Rotate and Issue refuse a grace below zero or above MaxGrace, answered 400
// naming grace_seconds; MaxGrace itself is fine.
func TestBadGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := memGraceGate(t)
	if _, _, err := g.Issue(ctx, "sam", "basic", 0, "", 0); err != nil {
		t.Fatal(err)
	}
	for _, grace := range []time.Duration{-time.Nanosecond, tollgate.MaxGrace + time.Nanosecond} {
		_, _, err := g.Rotate(ctx, "sam", grace)
		if !errors.Is(err, tollgate.ErrBadGrace) {
			t.Fatalf("Rotate(%v) = %v, want ErrBadGrace", grace, err)
		}
		status, detail, dep := tollgate.ProblemFor(err)
		if status != 400 || dep || detail != `Invalid body field "grace_seconds": must be an integer from 0 to 604800` {
			t.Errorf("Rotate(%v) answers %d %q (dependency %v)", grace, status, detail, dep)
		}
		if _, _, err := g.Issue(ctx, "sam", "premium", 0, "", grace); !errors.Is(err, tollgate.ErrBadGrace) {
			t.Errorf("Issue(grace %v) = %v, want ErrBadGrace", grace, err)
		}
	}
	if keys, _ := g.keys.ListByUser(ctx, "sam"); len(keys) != 1 || !keys[0].Active() || keys[0].Expiring() {
		t.Fatalf("refused calls changed the keys: %+v", keys)
	}
	if _, _, err := g.Rotate(ctx, "sam", tollgate.MaxGrace); err != nil {
		t.Errorf("Rotate(MaxGrace) = %v", err)
	}
}

// A plan change with grace (Stripe's, through entitlement) retires the old key
// instead of revoking it: it keeps working until the grace ends, on the new
// plan's limits and the new key's quota, so the customer gains no second
// allowance; on every backend, and atomically on SQL.
func TestIssueWithGrace(t *testing.T) {
	t.Parallel()
	t.Run("memstore", func(t *testing.T) {
		t.Parallel()
		issueWithGrace(t, memGraceGate(t))
	})
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		issueWithGrace(t, sqlGraceGate(t, db))
	})
}

func issueWithGrace(t *testing.T, g *graceGate) {
	ctx := context.Background()
	basicRoute, premiumRoute := g.Require("basic")(ok), g.Require("premium")(ok)
	oldRaw, oldKey, err := g.Issue(ctx, "sam", "basic", 0, "first", 0)
	if err != nil {
		t.Fatal(err)
	}
	expectRemaining(t, basicRoute, 10, oldRaw, oldRaw, oldRaw, oldRaw)
	if a := call(premiumRoute, oldRaw); a.status != 402 {
		t.Fatalf("a basic key on a premium route: %d", a.status)
	}

	// Upgrade with a grace: a new key on premium with a fresh premium quota.
	start := time.Now()
	newRaw, newKey, err := g.Issue(ctx, "sam", "premium", 0, "billing: plan changed", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old := g.key(t, oldRaw)
	if !old.Expiring() || old.Plan != "premium" || old.QuotaID != newKey.QuotaID ||
		old.ExpiresAt.Before(start.Add(time.Hour).Truncate(time.Microsecond)) || old.ExpiresAt.After(time.Now().Add(time.Hour)) {
		t.Fatalf("the old key after a plan change with grace: %+v; want it expiring in an hour on premium and the new quota %s", old, newKey.QuotaID)
	}
	if old.RevokeReason != "" || !old.RevokedAt.IsZero() {
		t.Errorf("the old key was revoked: %+v", old)
	}
	// The old key runs on the new plan: its rank, its burst rate, its quota,
	// which both keys spend.
	a := call(premiumRoute, oldRaw)
	if a.status != 200 || a.header.Get("X-Quota-Limit") != "100" || a.header.Get("X-Quota-Remaining") != "99" ||
		a.header.Get("X-Ratelimit-Limit") != "2000" || !strings.Contains(a.header.Get("Ratelimit-Policy"), `"premium";`) {
		t.Fatalf("the old key on the new plan: %d %q, quota %s/%s, burst %s, policy %s", a.status, a.detail,
			a.header.Get("X-Quota-Remaining"), a.header.Get("X-Quota-Limit"), a.header.Get("X-Ratelimit-Limit"), a.header.Get("Ratelimit-Policy"))
	}
	expectRemaining(t, premiumRoute, 99, newRaw, oldRaw, newRaw)
	// The old quota was given back what the gate held leased: its store count is
	// what was served on it.
	if u, err := g.quotas.Usage(ctx, oldKey.QuotaID, time.Now()); err != nil || u.Used != 4 {
		t.Errorf("the old quota after the change: %+v, %v; want 4 used (its leases dropped)", u, err)
	}
	if keys, _ := g.keys.ListByUser(ctx, "sam"); len(keys) != 2 || keys[0].ID != newKey.ID || keys[0].Expiring() || !keys[1].Expiring() {
		t.Errorf("sam's keys: %+v; want the new current key and the old expiring one", keys)
	}

	// A downgrade with grace: both keys that work now run on basic, and a
	// premium route refuses both.
	downRaw, downKey, err := g.Issue(ctx, "sam", "basic", 0, "billing: plan changed", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, raw := range []string{oldRaw, newRaw, downRaw} {
		k := g.key(t, raw)
		if k.Plan != "basic" || k.QuotaID != downKey.QuotaID {
			t.Errorf("key %d after the downgrade: plan %s quota %s, want basic and %s", i, k.Plan, k.QuotaID, downKey.QuotaID)
		}
		if a := call(premiumRoute, raw); a.status != 402 {
			t.Errorf("key %d on a premium route after the downgrade: %d, want 402", i, a.status)
		}
	}
	// Both replaced keys end with the downgrade's half hour: the first one's
	// hour is cut short, not kept (a key never outlives the latest change's
	// grace, and Retire never extends one).
	half := g.key(t, newRaw).ExpiresAt
	if got := g.key(t, oldRaw).ExpiresAt; !got.Equal(half) || !half.Before(old.ExpiresAt) {
		t.Errorf("after the downgrade the keys expire at %v and %v; want both at the downgrade's expiry, before %v", got, half, old.ExpiresAt)
	}
	expectRemaining(t, basicRoute, 10, oldRaw, newRaw, downRaw)

	// Cancellation revokes at once: RevokeUser takes the expiring keys too.
	if n, err := g.RevokeUser(ctx, "sam", "billing: no paid plan"); err != nil || n != 3 {
		t.Fatalf("RevokeUser = %d, %v; want 3", n, err)
	}
	for i, raw := range []string{oldRaw, newRaw, downRaw} {
		if a := call(basicRoute, raw); a.status != 403 {
			t.Errorf("key %d after RevokeUser: %d, want 403", i, a.status)
		}
	}
}

// On SQL a plan change with grace commits the retirement, the new key and its
// quota together, or nothing: a failing quota leaves the old key as it was.
func TestIssueWithGraceAtomic(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		g := sqlGraceGate(t, db)
		raw, k, err := g.Issue(ctx, "sam", "basic", 0, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		broken := newGraceGate(t, g.keys, failingPut{g.quotas})
		if _, _, err := broken.Issue(ctx, "sam", "premium", 0, "", time.Hour); err == nil {
			t.Fatal("Issue with grace succeeded although the quota could not be set")
		}
		if got := g.key(t, raw); got != k {
			t.Fatalf("after a failed Issue with grace the old key is %+v, want %+v", got, k)
		}
		if keys, _ := g.keys.ListByUser(ctx, "sam"); len(keys) != 1 {
			t.Errorf("sam has %d keys after the failed Issue, want 1", len(keys))
		}
		if a := call(g.Require("basic")(ok), raw); a.status != 200 || a.header.Get("X-Quota-Limit") != "10" {
			t.Errorf("the old key after the failed Issue: %d, limit %q", a.status, a.header.Get("X-Quota-Limit"))
		}
	})
}

// TestGraceOnInjectedClock: expiry is judged by the gate's clock, the old key
// announces its end in Sunset, and the two keys of a rotation share one burst
// budget, as they share one quota.
func TestGraceOnInjectedClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, tollgate.Config{})
	old := f.issue(t, "sam", "gold", 0) // gold: 4 calls a minute
	h := f.gate.Require("gold")(ok)
	next, _, err := f.gate.Rotate(ctx, "sam", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := f.clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	for i, c := range []struct {
		key, sunset string
		status      int
	}{
		{old, want, 200}, {next, "", 200}, {old, want, 200}, {next, "", 200},
		{old, want, 429}, {next, "", 429}, // one budget of 4 for the pair
	} {
		a := call(h, c.key)
		if a.status != c.status || a.header.Get("Sunset") != c.sunset {
			t.Fatalf("call %d: status %d Sunset %q, want %d %q", i, a.status, a.header.Get("Sunset"), c.status, c.sunset)
		}
	}
	f.clock.Add(time.Hour)
	if a := call(h, old); a.status != http.StatusForbidden {
		t.Fatalf("old key at its expiry: %d, want 403", a.status)
	}
}
