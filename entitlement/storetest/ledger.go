package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
)

// RunLedger runs the suite of entitlement.MeterLedger as subtests of t: Record
// adds up exactly, also concurrently, and all or nothing; Usage ranges and orders;
// Unreported finds what no claim holds; a claim is exclusive (a stale or
// concurrent one changes nothing) and leaves later calls unreported; reports are
// due by time, marked once and never changed after; Backlog, Totals and
// PruneUsage count what they should. newLedger returns an empty, ready ledger; it
// is called once per subtest, and the subtests run in parallel.
func RunLedger(t *testing.T, newLedger func(t *testing.T) entitlement.MeterLedger) {
	tests := []struct {
		name string
		f    func(t *testing.T, l entitlement.MeterLedger)
	}{
		{"RecordAndUsage", testRecordAndUsage},
		{"Daily", testDaily},
		{"RecordAllOrNothing", testRecordAllOrNothing},
		{"RecordBatchOnce", testRecordBatchOnce},
		{"ConcurrentRecord", testConcurrentRecord},
		{"Unreported", testUnreported},
		{"ClaimIsExclusive", testClaim},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ReportsDueAndMarked", testReports},
		{"BacklogAndTotals", testTotals},
		{"PruneUsage", testPruneUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, newLedger(t))
		})
	}
}

// m0 is the ledger suite's first minute, in another zone than UTC.
var m0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.FixedZone("CET", 3600))

func minute(i int) time.Time { return m0.Add(time.Duration(i) * time.Minute).UTC() }

func record(t *testing.T, l entitlement.MeterLedger, recs ...entitlement.UsageRecord) {
	t.Helper()
	if err := l.Record(context.Background(), "", recs); err != nil {
		t.Fatalf("Record: %v", err)
	}
}

func usage(t *testing.T, l entitlement.MeterLedger, user string, from, to time.Time) []entitlement.UsageRecord {
	t.Helper()
	recs, err := l.Usage(context.Background(), user, from, to)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return recs
}

func rec(key, user string, bucket time.Time, calls int64) entitlement.UsageRecord {
	return entitlement.UsageRecord{KeyID: key, UserID: user, Bucket: bucket, Calls: calls}
}

func testRecordAndUsage(t *testing.T, l entitlement.MeterLedger) {
	if got := usage(t, l, "u1", minute(0), minute(60)); got == nil || len(got) != 0 {
		t.Fatalf("Usage of an empty ledger = %#v, want an empty slice", got)
	}
	// Seconds and nanoseconds within a minute file under the minute; records of one
	// key and minute add up, in one call and across calls; zero records are skipped.
	record(t, l,
		rec("k1", "u1", minute(0).Add(59*time.Second+999*time.Millisecond), 2),
		rec("k1", "u1", minute(0).In(time.FixedZone("X", -7*3600)), 3),
		rec("k2", "u1", minute(0), 1),
		rec("k1", "u1", minute(1), 4),
		rec("k3", "u2", minute(0), 9),
		rec("k4", "u1", minute(2), 0),
	)
	record(t, l, rec("k1", "u1", minute(0).Add(time.Second), 5))
	want := []entitlement.UsageRecord{
		rec("k1", "u1", minute(0), 10),
		rec("k2", "u1", minute(0), 1),
		rec("k1", "u1", minute(1), 4),
	}
	if got := usage(t, l, "u1", minute(0), minute(60)); !reflect.DeepEqual(got, want) {
		t.Fatalf("Usage(u1) =\n %+v\nwant (by bucket then key, UTC, minute-truncated)\n %+v", got, want)
	}
	if got := usage(t, l, "u1", minute(1), minute(2)); len(got) != 1 || got[0].Calls != 4 {
		t.Fatalf("Usage(u1, [m1, m2)) = %+v, want the minute m1 only", got)
	}
	if got := usage(t, l, "u1", minute(0), minute(1)); len(got) != 2 {
		t.Fatalf("Usage(u1, [m0, m1)) = %+v, want m0's two records, not m1's", got)
	}
	if got := usage(t, l, "u3", minute(0), minute(60)); len(got) != 0 {
		t.Fatalf("Usage(another user) = %+v", got)
	}
	// Large counts survive (BIGINT).
	record(t, l, rec("k9", "u9", minute(0), 1<<40), rec("k9", "u9", minute(0), 1<<40))
	if got := usage(t, l, "u9", minute(0), minute(1)); len(got) != 1 || got[0].Calls != 1<<41 {
		t.Fatalf("Usage(u9) = %+v, want 2^41 calls", got)
	}
}

// testDaily: Daily sums a user's keys by UTC day (not the zone of m0), over the
// minutes in [from, to).
func testDaily(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	midnight := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	if got, err := l.Daily(ctx, "u1", midnight, midnight.Add(24*time.Hour)); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Daily of an empty ledger = %#v, %v; want an empty slice", got, err)
	}
	record(t, l,
		rec("k1", "u1", midnight.Add(-time.Minute), 2), // 27 Nov, 23:59 UTC (28 Nov in CET)
		rec("k2", "u1", midnight.Add(-time.Minute), 3),
		rec("k1", "u1", midnight, 5),
		rec("k2", "u1", midnight.Add(23*time.Hour+59*time.Minute), 7),
		rec("k1", "u1", midnight.Add(24*time.Hour), 11),
		rec("k3", "u2", midnight, 100),
	)
	day := func(i int) time.Time { return midnight.AddDate(0, 0, i) }
	for _, tc := range []struct {
		from, to time.Time
		want     []entitlement.DailyUsage
	}{
		{day(-1), day(2), []entitlement.DailyUsage{{Day: day(-1), Calls: 5}, {Day: day(0), Calls: 12}, {Day: day(1), Calls: 11}}},
		{day(0), day(1), []entitlement.DailyUsage{{Day: day(0), Calls: 12}}},
		{midnight.Add(time.Minute), day(1), []entitlement.DailyUsage{{Day: day(0), Calls: 7}}}, // minutes in [from, to)
		{day(2), day(9), []entitlement.DailyUsage{}},
	} {
		got, err := l.Daily(ctx, "u1", tc.from, tc.to)
		if err != nil {
			t.Fatalf("Daily(%v, %v): %v", tc.from, tc.to, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("Daily(%v, %v) = %+v, want %+v", tc.from, tc.to, got, tc.want)
		}
		for i := range got {
			if !got[i].Day.Equal(tc.want[i].Day) || got[i].Day.Location() != time.UTC || got[i].Calls != tc.want[i].Calls {
				t.Fatalf("Daily(%v, %v) = %+v, want %+v", tc.from, tc.to, got, tc.want)
			}
		}
	}
}

func testRecordAllOrNothing(t *testing.T, l entitlement.MeterLedger) {
	for _, bad := range []entitlement.UsageRecord{
		rec("", "u1", minute(0), 1),
		rec("k1", "", minute(0), 1),
		rec("k1", "u1", minute(0), -1),
	} {
		err := l.Record(context.Background(), "", []entitlement.UsageRecord{rec("k1", "u1", minute(0), 5), bad})
		if !errors.Is(err, entitlement.ErrInvalidUsage) {
			t.Fatalf("Record with %+v = %v, want ErrInvalidUsage", bad, err)
		}
	}
	if got := usage(t, l, "u1", minute(0), minute(60)); len(got) != 0 {
		t.Fatalf("a refused Record recorded %+v", got)
	}
	if err := l.Record(context.Background(), "", nil); err != nil {
		t.Fatalf("Record(nil) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Record(ctx, "", []entitlement.UsageRecord{rec("k1", "u1", minute(0), 5)}); err == nil {
		t.Fatal("Record on a canceled context succeeded")
	}
	if got := usage(t, l, "u1", minute(0), minute(60)); len(got) != 0 {
		t.Fatalf("a canceled Record recorded %+v", got)
	}
}

func testConcurrentRecord(t *testing.T, l entitlement.MeterLedger) {
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := l.Record(context.Background(), "", []entitlement.UsageRecord{
					rec("k1", "u1", minute(0), 1),
					rec(fmt.Sprintf("k%d", 2+w), "u1", minute(i%3), 1),
				})
				if err != nil {
					t.Errorf("Record: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	var sum, hot int64
	for _, r := range usage(t, l, "u1", minute(0), minute(60)) {
		sum += r.Calls
		if r.KeyID == "k1" {
			hot = r.Calls
		}
	}
	if hot != writers*each || sum != 2*writers*each {
		t.Fatalf("after %d concurrent writers the hot minute holds %d calls (want %d) and all %d (want %d)", writers, hot, writers*each, sum, 2*writers*each)
	}
}

func unreported(t *testing.T, l entitlement.MeterLedger, before time.Time, limit int) []entitlement.UnreportedUsage {
	t.Helper()
	u, err := l.Unreported(context.Background(), before, limit)
	if err != nil {
		t.Fatalf("Unreported: %v", err)
	}
	return u
}

// report is a pending report claiming parts wholly.
func report(id string, parts ...entitlement.UnreportedUsage) entitlement.MeterReport {
	r := entitlement.MeterReport{Identifier: id, KeyID: parts[0].KeyID, UserID: parts[0].UserID, CustomerID: "cus_1",
		Period: parts[0].Bucket, Status: entitlement.ReportPending, CreatedAt: t0}
	for _, p := range parts {
		r.Calls += p.Calls - p.Claimed
	}
	return r
}

func claim(t *testing.T, l entitlement.MeterLedger, r entitlement.MeterReport, parts ...entitlement.UnreportedUsage) bool {
	t.Helper()
	ok, err := l.Claim(context.Background(), r, parts)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return ok
}

func testUnreported(t *testing.T, l entitlement.MeterLedger) {
	record(t, l, rec("k2", "u1", minute(0), 2), rec("k1", "u1", minute(0), 1), rec("k1", "u2", minute(1), 3), rec("k1", "u1", minute(2), 4))
	got := unreported(t, l, minute(2), -1)
	if len(got) != 3 || got[0].KeyID != "k1" || got[1].KeyID != "k2" || !got[2].Bucket.Equal(minute(1)) || got[2].Claimed != 0 {
		t.Fatalf("Unreported(before m2) = %+v, want m0/k1, m0/k2, m1/k1 (minute m2 is not before the cutoff)", got)
	}
	if got := unreported(t, l, minute(2), 2); len(got) != 2 {
		t.Fatalf("Unreported with limit 2 returned %d records", len(got))
	}
	if got := unreported(t, l, minute(0), -1); len(got) != 0 {
		t.Fatalf("Unreported(before m0) = %+v, want none", got)
	}
}

func testClaim(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	record(t, l, rec("k1", "u1", minute(0), 5), rec("k1", "u1", minute(1), 3))
	parts := unreported(t, l, minute(5), -1)
	r := report("tg_a", parts...)
	if r.Calls != 8 || !claim(t, l, r, parts...) {
		t.Fatalf("the first claim of %+v failed", parts)
	}
	if got := unreported(t, l, minute(5), -1); len(got) != 0 {
		t.Fatalf("after the claim, Unreported = %+v", got)
	}
	// The same claim again (another reporter that read before) loses, under its own
	// identifier or the same one.
	for _, id := range []string{"tg_a", "tg_b"} {
		if claim(t, l, report(id, parts...), parts...) {
			t.Fatalf("a stale claim as %s succeeded", id)
		}
	}
	// Calls recorded after the claim are unreported again, with the claimed count.
	record(t, l, rec("k1", "u1", minute(0), 2))
	late := unreported(t, l, minute(5), -1)
	if len(late) != 1 || late[0].Calls != 7 || late[0].Claimed != 5 {
		t.Fatalf("after a late record, Unreported = %+v, want m0 with 7 calls, 5 claimed", late)
	}
	// A claim whose identifier exists changes nothing, even for unclaimed calls.
	if claim(t, l, report("tg_a", late...), late...) {
		t.Fatal("a claim under an existing identifier succeeded")
	}
	if got := unreported(t, l, minute(5), -1); len(got) != 1 || got[0].Claimed != 5 {
		t.Fatalf("a failed claim changed the ledger: %+v", got)
	}
	// A claim of which one part is stale changes none of its parts.
	record(t, l, rec("k1", "u1", minute(1), 1))
	both := unreported(t, l, minute(5), -1)
	staleOne := []entitlement.UnreportedUsage{both[0], both[1]}
	staleOne[1].Claimed = 0 // m1 has 3 claimed already
	if ok, err := l.Claim(ctx, report("tg_c", staleOne...), staleOne); err != nil || ok {
		t.Fatalf("a partly stale claim = %v, %v; want false", ok, err)
	}
	if got := unreported(t, l, minute(5), -1); !reflect.DeepEqual(got, both) {
		t.Fatalf("a partly stale claim changed the ledger:\n %+v\nwant\n %+v", got, both)
	}
	if !claim(t, l, report("tg_d", both...), both...) {
		t.Fatal("the late calls could not be claimed")
	}
	// A report whose calls do not add up, or that claims nothing, is refused.
	record(t, l, rec("k1", "u1", minute(2), 1))
	more := unreported(t, l, minute(5), -1)
	bad := report("tg_e", more...)
	bad.Calls++
	if _, err := l.Claim(ctx, bad, more); !errors.Is(err, entitlement.ErrInvalidUsage) {
		t.Fatalf("a claim that does not add up: %v, want ErrInvalidUsage", err)
	}
	if _, err := l.Claim(ctx, report("tg_f", more...), nil); !errors.Is(err, entitlement.ErrInvalidUsage) {
		t.Fatalf("a claim without parts: %v, want ErrInvalidUsage", err)
	}
}

func testConcurrentClaims(t *testing.T, l entitlement.MeterLedger) {
	record(t, l, rec("k1", "u1", minute(0), 5), rec("k1", "u1", minute(1), 3))
	parts := unreported(t, l, minute(5), -1)
	const n = 8
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ok, err := l.Claim(context.Background(), report(fmt.Sprintf("tg_%d", i%2), parts...), parts)
			if err != nil {
				t.Errorf("Claim: %v", err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of %d concurrent claims of the same calls won, want 1", won.Load(), n)
	}
	due, err := l.DueReports(context.Background(), t0.Add(time.Hour), -1)
	if err != nil || len(due) != 1 || due[0].Calls != 8 {
		t.Fatalf("DueReports after the race = %+v, %v; want one report of 8 calls", due, err)
	}
}

func testReports(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	record(t, l, rec("k1", "u1", minute(0), 5), rec("k2", "u1", minute(0), 1), rec("k1", "u1", minute(1), 3), rec("k3", "u2", minute(1), 7))
	all := unreported(t, l, minute(5), -1) // m0/k1, m0/k2, m1/k1, m1/k3
	reports := []entitlement.MeterReport{report("tg_2", all[0]), report("tg_1", all[1]), report("tg_3", all[2]), report("tg_4", all[3])}
	reports[3].Status, reports[3].CustomerID = entitlement.ReportUnbilled, ""
	for i, r := range reports {
		if !claim(t, l, r, all[i]) {
			t.Fatalf("claim %s failed", r.Identifier)
		}
	}
	due, err := l.DueReports(ctx, t0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 3 || due[0].Identifier != "tg_1" || due[1].Identifier != "tg_2" || due[2].Identifier != "tg_3" {
		t.Fatalf("DueReports = %+v, want tg_1, tg_2 (period m0, by identifier), tg_3; not the unbilled one", due)
	}
	want := reports[1]
	want.Period, want.CreatedAt = us(want.Period), us(want.CreatedAt)
	if !reflect.DeepEqual(due[0], want) {
		t.Fatalf("a report round trip:\n got %+v\nwant %+v", due[0], want)
	}
	if got, _ := l.DueReports(ctx, t0, 1); len(got) != 1 {
		t.Fatalf("DueReports with limit 1 returned %d", len(got))
	}

	// A failure puts the report off; a send marks it sent, once.
	failed := due[0]
	failed.Attempts, failed.NextAttempt = 1, t0.Add(10*time.Second)
	if ok, err := l.UpdateReport(ctx, failed); err != nil || !ok {
		t.Fatalf("UpdateReport(failure) = %v, %v", ok, err)
	}
	if got, _ := l.DueReports(ctx, t0.Add(9*time.Second), -1); len(got) != 2 || got[0].Identifier != "tg_2" {
		t.Fatalf("before its next attempt, DueReports = %+v, want tg_2, tg_3", got)
	}
	later, _ := l.DueReports(ctx, t0.Add(10*time.Second), -1)
	if len(later) != 3 || later[0].Attempts != 1 || !later[0].NextAttempt.Equal(us(t0.Add(10*time.Second))) {
		t.Fatalf("at its next attempt, DueReports = %+v", later)
	}
	sent := later[0]
	sent.Status, sent.Attempts, sent.SentAt, sent.NextAttempt = entitlement.ReportSent, 2, t0.Add(11*time.Second), time.Time{}
	if ok, err := l.UpdateReport(ctx, sent); err != nil || !ok {
		t.Fatalf("UpdateReport(sent) = %v, %v", ok, err)
	}
	again := sent
	again.Status, again.SentAt, again.Attempts = entitlement.ReportPending, time.Time{}, 3
	if ok, err := l.UpdateReport(ctx, again); err != nil || ok {
		t.Fatalf("UpdateReport of a sent report = %v, %v; want false (a sent report never changes)", ok, err)
	}
	if got, _ := l.DueReports(ctx, t0.Add(time.Hour), -1); len(got) != 2 {
		t.Fatalf("after the send, DueReports = %+v, want the two others", got)
	}
	if _, err := l.UpdateReport(ctx, entitlement.MeterReport{Identifier: "tg_none", Status: entitlement.ReportSent}); !errors.Is(err, entitlement.ErrNotFound) {
		t.Fatalf("UpdateReport(unknown) = %v, want ErrNotFound", err)
	}
	abandoned := later[1]
	abandoned.Status = entitlement.ReportAbandoned
	if ok, err := l.UpdateReport(ctx, abandoned); err != nil || !ok {
		t.Fatalf("UpdateReport(abandoned) = %v, %v", ok, err)
	}
	totals, err := l.Totals(ctx, "", minute(0), minute(60))
	if err != nil {
		t.Fatal(err)
	}
	wantTotals := []entitlement.UsageTotal{
		{UserID: "u1", Served: 9, Reported: 1, Pending: 3, Abandoned: 5},
		{UserID: "u2", Served: 7, Unbilled: 7},
	}
	if !reflect.DeepEqual(totals, wantTotals) {
		t.Fatalf("Totals =\n %+v\nwant\n %+v", totals, wantTotals)
	}
}

func testTotals(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	if b, err := l.Backlog(ctx, minute(60)); err != nil || b != (entitlement.Backlog{}) {
		t.Fatalf("Backlog of an empty ledger = %+v, %v", b, err)
	}
	if tot, err := l.Totals(ctx, "", minute(0), minute(60)); err != nil || tot == nil || len(tot) != 0 {
		t.Fatalf("Totals of an empty ledger = %#v, %v; want an empty slice", tot, err)
	}
	record(t, l, rec("k1", "u1", minute(0), 5), rec("k1", "u1", minute(1), 3), rec("k2", "u2", minute(0), 4), rec("k1", "u1", minute(70), 1))
	parts := unreported(t, l, minute(1), -1) // m0/k1, m0/k2
	if !claim(t, l, report("tg_1", parts[0]), parts[0]) {
		t.Fatal("claim failed")
	}
	b, err := l.Backlog(ctx, minute(2))
	if err != nil || b != (entitlement.Backlog{Unclaimed: 2, Pending: 1}) {
		t.Fatalf("Backlog(before m2) = %+v, %v; want 2 unclaimed minutes (m0/k2, m1/k1), 1 pending report", b, err)
	}
	got, err := l.Totals(ctx, "u1", minute(0), minute(60))
	if err != nil {
		t.Fatal(err)
	}
	if want := []entitlement.UsageTotal{{UserID: "u1", Served: 8, Pending: 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Totals(u1, first hour) = %+v, want %+v", got, want)
	}
	if got[0].Unclaimed() != 3 {
		t.Fatalf("Unclaimed = %d, want 3", got[0].Unclaimed())
	}
	got, err = l.Totals(ctx, "", minute(60), minute(120))
	if err != nil || len(got) != 1 || got[0] != (entitlement.UsageTotal{UserID: "u1", Served: 1}) {
		t.Fatalf("Totals(all, second hour) = %+v, %v", got, err)
	}
}

func testPruneUsage(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	record(t, l, rec("k1", "u1", minute(0), 5), rec("k1", "u1", minute(1), 3), rec("k1", "u1", minute(2), 1))
	parts := unreported(t, l, minute(2), -1)
	for i, p := range parts {
		if !claim(t, l, report(fmt.Sprintf("tg_%d", i), p), p) {
			t.Fatal("claim failed")
		}
	}
	minutes, reports, err := l.PruneUsage(ctx, minute(1))
	if err != nil || minutes != 1 || reports != 1 {
		t.Fatalf("PruneUsage(m1) = %d, %d, %v; want 1 minute and 1 report", minutes, reports, err)
	}
	if got := usage(t, l, "u1", minute(0), minute(60)); len(got) != 2 || !got[0].Bucket.Equal(minute(1)) {
		t.Fatalf("after pruning, Usage = %+v", got)
	}
	if due, _ := l.DueReports(ctx, t0.Add(time.Hour), -1); len(due) != 1 || !due[0].Period.Equal(minute(1)) {
		t.Fatalf("after pruning, DueReports = %+v", due)
	}
}

// testRecordBatchOnce: a batch recorded twice (a retry after an unknown outcome)
// counts once; other batches and unnamed writes count each time.
func testRecordBatchOnce(t *testing.T, l entitlement.MeterLedger) {
	ctx := context.Background()
	rec := []entitlement.UsageRecord{{KeyID: "key_b", UserID: "bo", Bucket: minute(0), Calls: 5}}
	for _, batch := range []string{"batch-1", "batch-1", "batch-2", "", ""} {
		if err := l.Record(ctx, batch, rec); err != nil {
			t.Fatalf("Record(%q): %v", batch, err)
		}
	}
	got, err := l.Usage(ctx, "bo", minute(0), minute(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Calls != 20 {
		t.Fatalf("usage %+v, want one minute of 20 calls (batch-1 once, batch-2, two unnamed)", got)
	}
}
