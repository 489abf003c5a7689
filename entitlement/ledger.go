package entitlement

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// UsageRecord is the number of calls one key served in one minute.
type UsageRecord struct {
	KeyID  string
	UserID string // the key's owner
	// Bucket is the start of the minute, in UTC. Record files a record under the
	// minute its Bucket falls in.
	Bucket time.Time
	Calls  int64
}

// Ledger keeps the calls served per key per minute: the usage an account page
// shows and the Reporter bills. Implementations are safe for concurrent use.
type Ledger interface {
	// Record adds each record's calls to its key's minute (an upsert that
	// increments), all records or none. batch names this write: a Record whose
	// batch was recorded before (within a day) changes nothing, so a write whose
	// outcome is unknown — the connection broke as it committed — can be retried
	// as it is without counting calls twice; "" records without that check.
	// Records of zero calls are skipped; a record without KeyID or UserID, or
	// with negative calls, fails the whole call (ErrInvalidUsage).
	Record(ctx context.Context, batch string, recs []UsageRecord) error

	// Usage returns the user's records whose minute is in [from, to), by bucket
	// then key ID; none is an empty slice.
	Usage(ctx context.Context, userID string, from, to time.Time) ([]UsageRecord, error)

	// Daily returns the user's calls over all their keys per UTC day, for the
	// minutes in [from, to), oldest day first; days without calls are left out
	// and none is an empty slice. It is Usage summed by day, at the cost of one
	// row a day rather than one a minute and key.
	Daily(ctx context.Context, userID string, from, to time.Time) ([]DailyUsage, error)
}

// DailyUsage is the calls of one user on one UTC day.
type DailyUsage struct {
	Day   time.Time // the day's midnight, UTC
	Calls int64
}

// Report statuses: what became of a MeterReport.
const (
	// ReportPending: to be sent to Stripe (again, after a failure).
	ReportPending = "pending"
	// ReportSent: Stripe accepted the meter event.
	ReportSent = "sent"
	// ReportUnbilled: the user had no Stripe customer when the calls were claimed,
	// or the period ended before the customer was bound; nothing is sent for them.
	ReportUnbilled = "unbilled"
	// ReportAbandoned: the period fell out of the window in which Stripe accepts
	// meter events (MeterEventMaxAge) before it could be sent.
	ReportAbandoned = "abandoned"
)

// MeterReport is one Stripe meter event: calls of one key in one reporting
// period (a minute, or what ReporterConfig.Period says), claimed from the ledger
// so that no other report counts them again.
type MeterReport struct {
	// Identifier is the meter event's identifier (MeterIdentifier), unique among
	// reports. A resend carries the same identifier and value, so Stripe counts
	// it once.
	Identifier string
	KeyID      string
	UserID     string
	CustomerID string    // Stripe customer billed; empty for ReportUnbilled
	Period     time.Time // start of the reporting period: the event's timestamp
	Calls      int64     // the event's value
	Status     string    // Report… constant
	Attempts   int       // sends tried
	// NextAttempt is when a pending report may be sent again (zero: at once).
	NextAttempt time.Time
	CreatedAt   time.Time
	SentAt      time.Time // when Stripe accepted it; zero unless ReportSent
}

// UnreportedUsage is a ledger record with calls no report claims yet.
type UnreportedUsage struct {
	UsageRecord       // Calls are all of the minute's calls
	Claimed     int64 // calls of the minute that reports claimed already
}

// UsageTotal compares, for one user and period, the calls the ledger counted with
// what was reported. Once the Reporter has caught up, Served equals
// Reported + Unbilled + Abandoned (and, for a user with a Stripe customer,
// Reported alone).
type UsageTotal struct {
	UserID    string
	Served    int64 // calls the ledger counted
	Reported  int64 // calls in meter events Stripe accepted
	Pending   int64 // calls claimed by reports not sent yet
	Unbilled  int64 // calls served while the user had no Stripe customer
	Abandoned int64 // calls of reports given up (older than Stripe accepts)
}

// Unclaimed returns the calls no report claims yet: those of periods still open,
// or that the Reporter has not reached.
func (t UsageTotal) Unclaimed() int64 {
	return t.Served - t.Reported - t.Pending - t.Unbilled - t.Abandoned
}

// Backlog is the Reporter's outstanding work.
type Backlog struct {
	Unclaimed int64 // ledger minutes before the cutoff with calls no report claims
	Pending   int64 // reports not sent yet
}

// MeterLedger is a Ledger that also keeps the meter reports made from it: the
// Reporter's store. entitlement/memstore and entitlement/sqlstore implement it,
// and entitlement/storetest.RunLedger is the suite they pass. Times come back in
// UTC at microsecond precision.
type MeterLedger interface {
	Ledger

	// Unreported returns up to limit records of minutes before before that hold
	// calls no report claims, oldest minute first, then by key ID.
	Unreported(ctx context.Context, before time.Time, limit int) ([]UnreportedUsage, error)

	// Claim stores r and claims for it, in one transaction, the calls of parts:
	// each part's minute then counts part.Calls as claimed, provided it still
	// counts part.Claimed (what Unreported said). It reports false, and changes
	// nothing, when another claim came first (a part's claimed count moved on, or
	// r.Identifier exists). r.Calls must be the sum of the parts' unclaimed calls.
	Claim(ctx context.Context, r MeterReport, parts []UnreportedUsage) (bool, error)

	// DueReports returns up to limit pending reports whose NextAttempt is at or
	// before now, by period then identifier.
	DueReports(ctx context.Context, now time.Time, limit int) ([]MeterReport, error)

	// UpdateReport stores r's Status, Attempts, NextAttempt and SentAt, provided
	// the stored report is still pending (a report sent is never changed again);
	// it reports whether it did. ErrNotFound for an unknown identifier.
	UpdateReport(ctx context.Context, r MeterReport) (bool, error)

	// Backlog counts the unclaimed minutes before before and the pending reports.
	Backlog(ctx context.Context, before time.Time) (Backlog, error)

	// Totals returns, per user (all users when userID is empty), the calls served
	// in minutes in [from, to) and those of reports whose period is in [from, to),
	// by user ID; users without records are left out. Choose from and to on the
	// reporting period's boundaries (whole hours and days are) so that both sides
	// cover the same calls.
	Totals(ctx context.Context, userID string, from, to time.Time) ([]UsageTotal, error)

	// PruneUsage forgets ledger minutes and reports before before and returns how
	// many of each it deleted. Stripe accepts no meter event older than
	// MeterEventMaxAge, so anything that old is of no further use to the Reporter;
	// keep what the account page and the usage report show (a year, say).
	PruneUsage(ctx context.Context, before time.Time) (minutes, reports int64, err error)
}

// MeterIdentifier is the identifier of the meter event that reports calls of
// keyID from the minute bucket onwards, offset being the calls of that minute
// reported before ("tg_" and 32 hex digits of a SHA-256). The same share of the
// same minute always gets the same identifier, so a resend (a retry, a restart
// before the send was marked) is counted once by Stripe, while calls recorded
// into a minute after it was reported go out as a new event with an identifier
// of their own.
func MeterIdentifier(keyID string, bucket time.Time, offset int64) string {
	h := sha256.Sum256([]byte("tollgate meter event v1\x00" + keyID + "\x00" +
		bucket.UTC().Truncate(time.Minute).Format(time.RFC3339) + "\x00" + strconv.FormatInt(offset, 10)))
	return "tg_" + hex.EncodeToString(h[:16])
}
