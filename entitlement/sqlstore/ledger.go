package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/usage"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

// The ledger's tables. entitlement_usage holds one row per key and minute: the
// calls served (calls) and how many of them meter reports claimed (claimed); a
// partial index finds the minutes with calls left to report. Its writes never
// take entitlement_lock, so recording usage does not wait for billing events.
var ledgerTables = []sqldb.Table{
	{
		Name: "entitlement_usage",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_usage (
	key_id TEXT NOT NULL,
	bucket TIMESTAMP NOT NULL,
	user_id TEXT NOT NULL,
	calls BIGINT NOT NULL DEFAULT 0,
	claimed BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (key_id, bucket)
)`,
		Indexes: []string{
			`CREATE INDEX IF NOT EXISTS entitlement_usage_user ON entitlement_usage (user_id, bucket)`,
			`CREATE INDEX IF NOT EXISTS entitlement_usage_unclaimed ON entitlement_usage (bucket) WHERE claimed < calls`,
		},
	},
	{
		// The batches Record wrote, kept a day, so that a retried batch counts once.
		Name: "entitlement_usage_batches",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_usage_batches (
	batch TEXT PRIMARY KEY,
	recorded_at TIMESTAMP NOT NULL
)`,
		Indexes: []string{`CREATE INDEX IF NOT EXISTS entitlement_usage_batches_at ON entitlement_usage_batches (recorded_at)`},
	},
	{
		Name: "entitlement_usage_reports",
		Create: `CREATE TABLE IF NOT EXISTS entitlement_usage_reports (
	identifier TEXT PRIMARY KEY,
	key_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	customer_id TEXT NOT NULL DEFAULT '',
	period TIMESTAMP NOT NULL,
	calls BIGINT NOT NULL,
	status TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TIMESTAMP NULL,
	created_at TIMESTAMP NULL,
	sent_at TIMESTAMP NULL
)`,
		Indexes: []string{
			`CREATE INDEX IF NOT EXISTS entitlement_usage_reports_pending ON entitlement_usage_reports (period) WHERE status = 'pending'`,
			`CREATE INDEX IF NOT EXISTS entitlement_usage_reports_user ON entitlement_usage_reports (user_id, period)`,
		},
	},
}

// recordChunk is how many rows one upsert statement writes (4 parameters each).
const recordChunk = 100

type ledgerQueries struct {
	usage, daily, unreported, insertReport, claim    string
	due, updateReport, reportExists                  string
	unclaimedCount, pendingCount                     string
	servedAll, servedUser, reportedAll, reportedUser string
	pruneUsage, pruneReports                         string
	rebind                                           func(string) string
}

const reportColumns = `identifier, key_id, user_id, customer_id, period, calls, status, attempts, next_attempt_at, created_at, sent_at`

// newLedgerQueries returns the ledger's statements; postgres selects the dialect
// of the one that names a timestamp's day (SQLite keeps timestamps as text that
// begins with the UTC date).
func newLedgerQueries(r func(string) string, postgres bool) ledgerQueries {
	day := `substr(bucket, 1, 10)`
	if postgres {
		day = `to_char(bucket, 'YYYY-MM-DD')`
	}
	return ledgerQueries{
		rebind: r,
		usage:  r(`SELECT key_id, user_id, bucket, calls FROM entitlement_usage WHERE user_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket, key_id`),
		daily: r(`SELECT ` + day + ` AS day, SUM(calls) AS calls FROM entitlement_usage
	WHERE user_id = ? AND bucket >= ? AND bucket < ? GROUP BY ` + day + ` ORDER BY day`),
		unreported:   r(`SELECT key_id, user_id, bucket, calls, claimed FROM entitlement_usage WHERE claimed < calls AND bucket < ? ORDER BY bucket, key_id LIMIT ?`),
		insertReport: r(`INSERT INTO entitlement_usage_reports (` + reportColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (identifier) DO NOTHING`),
		claim:        r(`UPDATE entitlement_usage SET claimed = ? WHERE key_id = ? AND bucket = ? AND claimed = ? AND calls >= ?`),
		due: r(`SELECT ` + reportColumns + ` FROM entitlement_usage_reports
	WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY period, identifier LIMIT ?`),
		updateReport:   r(`UPDATE entitlement_usage_reports SET status = ?, attempts = ?, next_attempt_at = ?, sent_at = ? WHERE identifier = ? AND status = 'pending'`),
		reportExists:   r(`SELECT COUNT(*) FROM entitlement_usage_reports WHERE identifier = ?`),
		unclaimedCount: r(`SELECT COUNT(*) FROM entitlement_usage WHERE claimed < calls AND bucket < ?`),
		pendingCount:   `SELECT COUNT(*) FROM entitlement_usage_reports WHERE status = 'pending'`,
		servedAll:      r(`SELECT user_id, SUM(calls) AS n FROM entitlement_usage WHERE bucket >= ? AND bucket < ? GROUP BY user_id`),
		servedUser:     r(`SELECT user_id, SUM(calls) AS n FROM entitlement_usage WHERE bucket >= ? AND bucket < ? AND user_id = ? GROUP BY user_id`),
		reportedAll:    r(`SELECT user_id, status, SUM(calls) AS n FROM entitlement_usage_reports WHERE period >= ? AND period < ? GROUP BY user_id, status`),
		reportedUser:   r(`SELECT user_id, status, SUM(calls) AS n FROM entitlement_usage_reports WHERE period >= ? AND period < ? AND user_id = ? GROUP BY user_id, status`),
		pruneUsage:     r(`DELETE FROM entitlement_usage WHERE bucket < ?`),
		pruneReports:   r(`DELETE FROM entitlement_usage_reports WHERE period < ?`),
	}
}

// Record implements entitlement.Ledger: one transaction (or ctx's, if it carries
// one on the store's database) of multi-row upserts.
func (s *Store) Record(ctx context.Context, batch string, recs []entitlement.UsageRecord) error {
	recs, err := usage.Merge(recs)
	if err != nil || len(recs) == 0 {
		return err
	}
	err = sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		if batch != "" {
			now := sqldb.T(time.Now())
			if _, err := q.ExecContext(ctx, s.q.ledger.rebind(`DELETE FROM entitlement_usage_batches WHERE recorded_at < ?`), sqldb.T(now.Add(-24*time.Hour))); err != nil {
				return err
			}
			res, err := q.ExecContext(ctx, s.q.ledger.rebind(`INSERT INTO entitlement_usage_batches (batch, recorded_at) VALUES (?, ?) ON CONFLICT (batch) DO NOTHING`), batch, now)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err // n == 0: recorded before
			}
		}
		for len(recs) > 0 {
			n := min(len(recs), recordChunk)
			var b strings.Builder
			b.WriteString(`INSERT INTO entitlement_usage (key_id, bucket, user_id, calls) VALUES `)
			args := make([]any, 0, 4*n)
			for i, r := range recs[:n] {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?)")
				args = append(args, r.KeyID, sqldb.T(r.Bucket), r.UserID, r.Calls)
			}
			b.WriteString(` ON CONFLICT (key_id, bucket) DO UPDATE SET calls = entitlement_usage.calls + excluded.calls`)
			if _, err := q.ExecContext(ctx, s.q.ledger.rebind(b.String()), args...); err != nil {
				return err
			}
			recs = recs[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("entitlement/sqlstore: record usage: %w", err)
	}
	return nil
}

type usageRow struct {
	KeyID   string     `db:"key_id"`
	UserID  string     `db:"user_id"`
	Bucket  sqldb.Time `db:"bucket"`
	Calls   int64      `db:"calls"`
	Claimed int64      `db:"claimed"`
}

func (r usageRow) record() entitlement.UsageRecord {
	return entitlement.UsageRecord{KeyID: r.KeyID, UserID: r.UserID, Bucket: r.Bucket.Time, Calls: r.Calls}
}

// Usage implements entitlement.Ledger.
func (s *Store) Usage(ctx context.Context, userID string, from, to time.Time) ([]entitlement.UsageRecord, error) {
	var rows []usageRow
	if err := sqldb.Q(ctx, s.db).SelectContext(ctx, &rows, s.q.ledger.usage, userID, sqldb.T(from), sqldb.T(to)); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: usage: %w", err)
	}
	out := make([]entitlement.UsageRecord, len(rows))
	for i, r := range rows {
		out[i] = r.record()
	}
	return out, nil
}

// Daily implements entitlement.Ledger.
func (s *Store) Daily(ctx context.Context, userID string, from, to time.Time) ([]entitlement.DailyUsage, error) {
	var rows []struct {
		Day   string `db:"day"`
		Calls int64  `db:"calls"`
	}
	if err := sqldb.Q(ctx, s.db).SelectContext(ctx, &rows, s.q.ledger.daily, userID, sqldb.T(from), sqldb.T(to)); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: daily usage: %w", err)
	}
	out := make([]entitlement.DailyUsage, len(rows))
	for i, r := range rows {
		d, err := time.Parse(time.DateOnly, r.Day)
		if err != nil {
			return nil, fmt.Errorf("entitlement/sqlstore: daily usage: day %q: %w", r.Day, err)
		}
		out[i] = entitlement.DailyUsage{Day: d, Calls: r.Calls}
	}
	return out, nil
}

func limitArg(limit int) int64 {
	if limit < 0 {
		return math.MaxInt32
	}
	return int64(limit)
}

// Unreported implements entitlement.MeterLedger.
func (s *Store) Unreported(ctx context.Context, before time.Time, limit int) ([]entitlement.UnreportedUsage, error) {
	var rows []usageRow
	if err := sqldb.Q(ctx, s.db).SelectContext(ctx, &rows, s.q.ledger.unreported, sqldb.T(before), limitArg(limit)); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: unreported usage: %w", err)
	}
	out := make([]entitlement.UnreportedUsage, len(rows))
	for i, r := range rows {
		out[i] = entitlement.UnreportedUsage{UsageRecord: r.record(), Claimed: r.Claimed}
	}
	return out, nil
}

// errLost rolls back a claim that another one overtook.
var errLost = errors.New("entitlement/sqlstore: claim lost")

// Claim implements entitlement.MeterLedger. The report's row is inserted first and
// the minutes are updated in key and bucket order, each only if its claimed count
// is still the one the caller read, so that concurrent claims (two reporters)
// cannot both take the same calls, and cannot deadlock.
func (s *Store) Claim(ctx context.Context, r entitlement.MeterReport, parts []entitlement.UnreportedUsage) (bool, error) {
	if err := usage.CheckClaim(r, parts); err != nil {
		return false, err
	}
	ordered := slices.Clone(parts)
	sort.Slice(ordered, func(i, j int) bool {
		if ordered[i].KeyID != ordered[j].KeyID {
			return ordered[i].KeyID < ordered[j].KeyID
		}
		return ordered[i].Bucket.Before(ordered[j].Bucket)
	})
	err := sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		res, err := q.ExecContext(ctx, s.q.ledger.insertReport, r.Identifier, r.KeyID, r.UserID, r.CustomerID,
			sqldb.T(r.Period), r.Calls, r.Status, r.Attempts, sqldb.T(r.NextAttempt), sqldb.T(r.CreatedAt), sqldb.T(r.SentAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, errLost)
		}
		for _, p := range ordered {
			res, err := q.ExecContext(ctx, s.q.ledger.claim, p.Calls, p.KeyID, sqldb.T(p.Bucket), p.Claimed, p.Calls)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return errors.Join(err, errLost)
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errLost):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("entitlement/sqlstore: claim usage: %w", err)
	}
	return true, nil
}

type reportRow struct {
	Identifier  string     `db:"identifier"`
	KeyID       string     `db:"key_id"`
	UserID      string     `db:"user_id"`
	CustomerID  string     `db:"customer_id"`
	Period      sqldb.Time `db:"period"`
	Calls       int64      `db:"calls"`
	Status      string     `db:"status"`
	Attempts    int        `db:"attempts"`
	NextAttempt sqldb.Time `db:"next_attempt_at"`
	CreatedAt   sqldb.Time `db:"created_at"`
	SentAt      sqldb.Time `db:"sent_at"`
}

// DueReports implements entitlement.MeterLedger.
func (s *Store) DueReports(ctx context.Context, now time.Time, limit int) ([]entitlement.MeterReport, error) {
	var rows []reportRow
	if err := sqldb.Q(ctx, s.db).SelectContext(ctx, &rows, s.q.ledger.due, sqldb.T(now), limitArg(limit)); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: due reports: %w", err)
	}
	out := make([]entitlement.MeterReport, len(rows))
	for i, r := range rows {
		out[i] = entitlement.MeterReport{
			Identifier: r.Identifier, KeyID: r.KeyID, UserID: r.UserID, CustomerID: r.CustomerID,
			Period: r.Period.Time, Calls: r.Calls, Status: r.Status, Attempts: r.Attempts,
			NextAttempt: r.NextAttempt.Time, CreatedAt: r.CreatedAt.Time, SentAt: r.SentAt.Time,
		}
	}
	return out, nil
}

// UpdateReport implements entitlement.MeterLedger.
func (s *Store) UpdateReport(ctx context.Context, r entitlement.MeterReport) (bool, error) {
	var n int64
	err := sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		res, err := q.ExecContext(ctx, s.q.ledger.updateReport, r.Status, r.Attempts, sqldb.T(r.NextAttempt), sqldb.T(r.SentAt), r.Identifier)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: update report: %w", err)
	}
	if n == 1 {
		return true, nil
	}
	var exists int
	if err := sqldb.Q(ctx, s.db).GetContext(ctx, &exists, s.q.ledger.reportExists, r.Identifier); err != nil {
		return false, fmt.Errorf("entitlement/sqlstore: update report: %w", err)
	}
	if exists == 0 {
		return false, entitlement.ErrNotFound
	}
	return false, nil
}

// Backlog implements entitlement.MeterLedger.
func (s *Store) Backlog(ctx context.Context, before time.Time) (entitlement.Backlog, error) {
	var b entitlement.Backlog
	q := sqldb.Q(ctx, s.db)
	if err := q.GetContext(ctx, &b.Unclaimed, s.q.ledger.unclaimedCount, sqldb.T(before)); err != nil {
		return b, fmt.Errorf("entitlement/sqlstore: backlog: %w", err)
	}
	if err := q.GetContext(ctx, &b.Pending, s.q.ledger.pendingCount); err != nil {
		return b, fmt.Errorf("entitlement/sqlstore: backlog: %w", err)
	}
	return b, nil
}

// Totals implements entitlement.MeterLedger.
func (s *Store) Totals(ctx context.Context, userID string, from, to time.Time) ([]entitlement.UsageTotal, error) {
	q := sqldb.Q(ctx, s.db)
	served, reported := s.q.ledger.servedAll, s.q.ledger.reportedAll
	args := []any{sqldb.T(from), sqldb.T(to)}
	if userID != "" {
		served, reported = s.q.ledger.servedUser, s.q.ledger.reportedUser
		args = append(args, userID)
	}
	var servedRows []struct {
		UserID string `db:"user_id"`
		N      int64  `db:"n"`
	}
	if err := q.SelectContext(ctx, &servedRows, served, args...); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: totals: %w", err)
	}
	var reportRows []struct {
		UserID string `db:"user_id"`
		Status string `db:"status"`
		N      int64  `db:"n"`
	}
	if err := q.SelectContext(ctx, &reportRows, reported, args...); err != nil {
		return nil, fmt.Errorf("entitlement/sqlstore: totals: %w", err)
	}
	totals := map[string]*entitlement.UsageTotal{}
	of := func(user string) *entitlement.UsageTotal {
		t, ok := totals[user]
		if !ok {
			t = &entitlement.UsageTotal{UserID: user}
			totals[user] = t
		}
		return t
	}
	for _, r := range servedRows {
		of(r.UserID).Served += r.N
	}
	for _, r := range reportRows {
		t := of(r.UserID)
		switch r.Status {
		case entitlement.ReportSent:
			t.Reported += r.N
		case entitlement.ReportPending:
			t.Pending += r.N
		case entitlement.ReportUnbilled:
			t.Unbilled += r.N
		case entitlement.ReportAbandoned:
			t.Abandoned += r.N
		}
	}
	out := make([]entitlement.UsageTotal, 0, len(totals))
	for _, t := range totals {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// PruneUsage implements entitlement.MeterLedger.
func (s *Store) PruneUsage(ctx context.Context, before time.Time) (minutes, reports int64, err error) {
	err = sqldb.Atomic(ctx, s.db, func(ctx context.Context) error {
		q := sqldb.Q(ctx, s.db)
		res, err := q.ExecContext(ctx, s.q.ledger.pruneUsage, sqldb.T(before))
		if err != nil {
			return err
		}
		if minutes, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = q.ExecContext(ctx, s.q.ledger.pruneReports, sqldb.T(before))
		if err != nil {
			return err
		}
		reports, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("entitlement/sqlstore: prune usage: %w", err)
	}
	return minutes, reports, nil
}
