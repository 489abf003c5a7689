package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/usage"
)

// ledger is the Store's usage ledger and meter reports.
type ledger struct {
	mu      sync.Mutex
	minutes map[minuteKey]*minute
	reports map[string]entitlement.MeterReport
	batches map[string]time.Time // Record's batches, kept a day
}

type minuteKey struct {
	keyID  string
	bucket int64 // unix seconds
}

type minute struct {
	userID         string
	calls, claimed int64
}

func newLedger() ledger {
	return ledger{minutes: make(map[minuteKey]*minute), reports: make(map[string]entitlement.MeterReport), batches: make(map[string]time.Time)}
}

// Record implements entitlement.Ledger.
func (s *Store) Record(ctx context.Context, batch string, recs []entitlement.UsageRecord) error {
	recs, err := usage.Merge(recs)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if batch != "" {
		now := time.Now()
		for b, at := range l.batches {
			if now.Sub(at) > 24*time.Hour {
				delete(l.batches, b)
			}
		}
		if _, seen := l.batches[batch]; seen {
			return nil
		}
		l.batches[batch] = now
	}
	for _, r := range recs {
		k := minuteKey{r.KeyID, r.Bucket.Unix()}
		m, ok := l.minutes[k]
		if !ok {
			m = &minute{userID: r.UserID}
			l.minutes[k] = m
		}
		m.calls += r.Calls
	}
	return nil
}

// Usage implements entitlement.Ledger.
func (s *Store) Usage(ctx context.Context, userID string, from, to time.Time) ([]entitlement.UsageRecord, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []entitlement.UsageRecord{}
	for k, m := range l.minutes {
		if b := time.Unix(k.bucket, 0).UTC(); m.userID == userID && !b.Before(from) && b.Before(to) {
			out = append(out, entitlement.UsageRecord{KeyID: k.keyID, UserID: m.userID, Bucket: b, Calls: m.calls})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Bucket.Equal(out[j].Bucket) {
			return out[i].Bucket.Before(out[j].Bucket)
		}
		return out[i].KeyID < out[j].KeyID
	})
	return out, nil
}

// Daily implements entitlement.Ledger.
func (s *Store) Daily(ctx context.Context, userID string, from, to time.Time) ([]entitlement.DailyUsage, error) {
	recs, err := s.Usage(ctx, userID, from, to)
	if err != nil {
		return nil, err
	}
	out := []entitlement.DailyUsage{}
	for _, r := range recs { // by bucket
		y, m, d := r.Bucket.Date()
		day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		if n := len(out); n > 0 && out[n-1].Day.Equal(day) {
			out[n-1].Calls += r.Calls
			continue
		}
		out = append(out, entitlement.DailyUsage{Day: day, Calls: r.Calls})
	}
	return out, nil
}

// Unreported implements entitlement.MeterLedger.
func (s *Store) Unreported(ctx context.Context, before time.Time, limit int) ([]entitlement.UnreportedUsage, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []entitlement.UnreportedUsage{}
	for k, m := range l.minutes {
		if b := time.Unix(k.bucket, 0).UTC(); m.claimed < m.calls && b.Before(before) {
			out = append(out, entitlement.UnreportedUsage{
				UsageRecord: entitlement.UsageRecord{KeyID: k.keyID, UserID: m.userID, Bucket: b, Calls: m.calls},
				Claimed:     m.claimed,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Bucket.Equal(out[j].Bucket) {
			return out[i].Bucket.Before(out[j].Bucket)
		}
		return out[i].KeyID < out[j].KeyID
	})
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Claim implements entitlement.MeterLedger.
func (s *Store) Claim(ctx context.Context, r entitlement.MeterReport, parts []entitlement.UnreportedUsage) (bool, error) {
	if err := usage.CheckClaim(r, parts); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.reports[r.Identifier]; ok {
		return false, nil
	}
	for _, p := range parts {
		m, ok := l.minutes[minuteKey{p.KeyID, p.Bucket.Unix()}]
		if !ok || m.claimed != p.Claimed || m.calls < p.Calls {
			return false, nil
		}
	}
	for _, p := range parts {
		l.minutes[minuteKey{p.KeyID, p.Bucket.Unix()}].claimed = p.Calls
	}
	l.reports[r.Identifier] = normalReport(r)
	return true, nil
}

// DueReports implements entitlement.MeterLedger.
func (s *Store) DueReports(ctx context.Context, now time.Time, limit int) ([]entitlement.MeterReport, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []entitlement.MeterReport{}
	for _, r := range l.reports {
		if r.Status == entitlement.ReportPending && !r.NextAttempt.After(now) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Period.Equal(out[j].Period) {
			return out[i].Period.Before(out[j].Period)
		}
		return out[i].Identifier < out[j].Identifier
	})
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// UpdateReport implements entitlement.MeterLedger.
func (s *Store) UpdateReport(ctx context.Context, r entitlement.MeterReport) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.reports[r.Identifier]
	if !ok {
		return false, entitlement.ErrNotFound
	}
	if cur.Status != entitlement.ReportPending {
		return false, nil
	}
	cur.Status, cur.Attempts, cur.NextAttempt, cur.SentAt = r.Status, r.Attempts, us(r.NextAttempt), us(r.SentAt)
	l.reports[r.Identifier] = cur
	return true, nil
}

// Backlog implements entitlement.MeterLedger.
func (s *Store) Backlog(ctx context.Context, before time.Time) (entitlement.Backlog, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	var b entitlement.Backlog
	for k, m := range l.minutes {
		if m.claimed < m.calls && time.Unix(k.bucket, 0).Before(before) {
			b.Unclaimed++
		}
	}
	for _, r := range l.reports {
		if r.Status == entitlement.ReportPending {
			b.Pending++
		}
	}
	return b, nil
}

// Totals implements entitlement.MeterLedger.
func (s *Store) Totals(ctx context.Context, userID string, from, to time.Time) ([]entitlement.UsageTotal, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	totals := map[string]*entitlement.UsageTotal{}
	of := func(user string) *entitlement.UsageTotal {
		t, ok := totals[user]
		if !ok {
			t = &entitlement.UsageTotal{UserID: user}
			totals[user] = t
		}
		return t
	}
	for k, m := range l.minutes {
		if (userID == "" || m.userID == userID) && in(time.Unix(k.bucket, 0)) {
			of(m.userID).Served += m.calls
		}
	}
	for _, r := range l.reports {
		if (userID == "" || r.UserID == userID) && in(r.Period) {
			t := of(r.UserID)
			switch r.Status {
			case entitlement.ReportSent:
				t.Reported += r.Calls
			case entitlement.ReportPending:
				t.Pending += r.Calls
			case entitlement.ReportUnbilled:
				t.Unbilled += r.Calls
			case entitlement.ReportAbandoned:
				t.Abandoned += r.Calls
			}
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
func (s *Store) PruneUsage(ctx context.Context, before time.Time) (int64, int64, error) {
	l := &s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	var minutes, reports int64
	for k := range l.minutes {
		if time.Unix(k.bucket, 0).Before(before) {
			delete(l.minutes, k)
			minutes++
		}
	}
	for id, r := range l.reports {
		if r.Period.Before(before) {
			delete(l.reports, id)
			reports++
		}
	}
	return minutes, reports, nil
}

// normalReport returns r with its times as the SQL stores keep them.
func normalReport(r entitlement.MeterReport) entitlement.MeterReport {
	r.Period, r.NextAttempt, r.CreatedAt, r.SentAt = us(r.Period), us(r.NextAttempt), us(r.CreatedAt), us(r.SentAt)
	return r
}
