package entitlement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/billing/meterevent"
)

// MeterEventMaxAge is how old a reporting period may be and still be sent: a day
// short of the 35 days within which Stripe accepts a meter event's timestamp.
// Calls of older periods are given up (ReportAbandoned).
const MeterEventMaxAge = 34 * 24 * time.Hour

// ReporterConfig configures a Reporter. EventName, APIKey and Customers are
// required; the zero value of every other field is the documented default.
type ReporterConfig struct {
	// EventName is the event_name of the Stripe Billing Meter the calls go to.
	EventName string
	// APIKey is the secret (sk_…) or restricted key meter events are sent with.
	APIKey string
	// Backend is the stripe-go backend; nil means NewStripeBackend("", nil, Logger).
	Backend stripe.Backend
	// Customers is the entitlement Store that binds users to Stripe customers
	// (the Service's): a user's calls are billed to the customer that holds a
	// subscription which has not ended, else to the customer bound first.
	Customers Store
	// CustomerKey and ValueKey are the payload keys of the meter's customer
	// mapping and value settings; "" means Stripe's defaults, stripe_customer_id
	// and value.
	CustomerKey, ValueKey string
	// Period is the span one meter event covers per key: 0 means a minute, the
	// ledger's own bucket; an hour sends a sixtieth of the events. It must be a
	// whole number of minutes that divides a day.
	Period time.Duration
	// Grace is how long after a period's end its calls may still be recorded (the
	// gate flushes every second; a flush can be retried): a period is closed, and
	// reported, Grace after it ends. 0 means a minute. Calls recorded into a
	// period after it was reported are sent as an event of their own.
	Grace time.Duration
	// Interval is how often Run makes a pass; 0 means 30 seconds.
	Interval time.Duration
	// BatchSize bounds the ledger minutes claimed and the events sent in one pass;
	// 0 means 500.
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait before a failed event is sent
	// again: MinBackoff after the first failure, doubling up to MaxBackoff. 0 means
	// 10 seconds and an hour.
	MinBackoff, MaxBackoff time.Duration
	// Now is the reporter's clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures and give-ups, never the API key; nil means
	// slog.Default().
	Logger *slog.Logger
}

// ReporterStats are a Reporter's counters since it was made, for metrics.
type ReporterStats struct {
	Sent       uint64 // meter events Stripe accepted
	Duplicates uint64 // of those, events Stripe already had (a resend after a restart)
	Failed     uint64 // sends that failed (each is retried with backoff)
	Abandoned  uint64 // reports given up: older than MeterEventMaxAge
	Unbilled   uint64 // claims of calls of users without a Stripe customer
	// Pending is the backlog after the last pass: closed ledger minutes not yet
	// claimed plus reports not yet sent.
	Pending int64
	// LastPass is when the last pass ended (zero before the first).
	LastPass time.Time
}

// PassResult is what one pass of ReportOnce did.
type PassResult struct {
	Claimed   int // reports made from the ledger (any status)
	Sent      int // events Stripe accepted (duplicates included)
	Failed    int // sends that failed
	Abandoned int // reports given up
}

// Reporter sends the ledger's closed periods to Stripe as billing meter events
// (billing.meter_event): for each key whose user has a Stripe customer, one event
// per period with the customer, the calls as value, the period's start as
// timestamp and MeterIdentifier as identifier.
//
// What is reported is kept in the MeterLedger, in two steps. A claim moves a
// key's unreported calls of a closed period into a report, with its identifier
// and value, in one transaction (so that no two reports, nor two reporters, count
// the same calls). A pending report is then sent, and marked sent once Stripe has
// accepted it. A crash, an outage or a restart between the two leaves the report
// pending: it is sent again, with the same identifier and value, and Stripe, which
// keeps identifiers for at least 24 hours, refuses the second copy; the Reporter
// takes that refusal as the success it is. Only a report sent and then left
// unmarked for more than a day (a crash right after the send, and the database
// down for a day) could be counted twice; the marks of sends whose marking failed
// are kept in memory and written first on the next pass.
//
// A failed send is retried after MinBackoff, doubling up to MaxBackoff; a
// network failure, a rate limit or a server error ends the pass (the rest would
// fail alike), a refusal of one event does not. Calls of a user without a Stripe
// customer, and those of periods that ended before the customer was bound (an
// operator's grant before a purchase), are claimed as unbilled and never sent;
// calls of periods older than MeterEventMaxAge are given up. The monthly limit stays the hard cap; the
// operator prices overage in Stripe (graduated tiers over the meter).
//
// A Reporter is safe for concurrent use; passes do not overlap. Several processes
// may run one on the same database: claims are exclusive, and a report both
// send is one event for Stripe.
type Reporter struct {
	ledger MeterLedger
	cfg    ReporterConfig
	events meterevent.Client
	now    func() time.Time
	log    *slog.Logger

	pass     sync.Mutex             // held by a pass
	unmarked map[string]MeterReport // sent, but the mark failed; under pass

	sent, duplicates, failed, abandoned, unbilled atomic.Uint64
	pending                                       atomic.Int64
	lastPass                                      atomic.Int64 // unix nanoseconds
}

// NewReporter returns a Reporter on ledger. It fails when ledger, EventName,
// APIKey or Customers is missing, or Period is not a whole number of minutes that
// divides a day.
func NewReporter(ledger MeterLedger, cfg ReporterConfig) (*Reporter, error) {
	switch {
	case ledger == nil:
		return nil, errors.New("entitlement: NewReporter needs a MeterLedger")
	case cfg.EventName == "":
		return nil, errors.New("entitlement: ReporterConfig.EventName is required (the Billing Meter's event name)")
	case cfg.APIKey == "":
		return nil, errors.New("entitlement: ReporterConfig.APIKey is required")
	case cfg.Customers == nil:
		return nil, errors.New("entitlement: ReporterConfig.Customers is required (the Store that binds users to customers)")
	}
	if cfg.Period == 0 {
		cfg.Period = time.Minute
	}
	if cfg.Period < time.Minute || cfg.Period%time.Minute != 0 || (24*time.Hour)%cfg.Period != 0 {
		return nil, fmt.Errorf("entitlement: ReporterConfig.Period %v is not a whole number of minutes that divides a day", cfg.Period)
	}
	defaults := []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.Grace, time.Minute}, {&cfg.Interval, 30 * time.Second}, {&cfg.MinBackoff, 10 * time.Second}, {&cfg.MaxBackoff, time.Hour}}
	for _, d := range defaults {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.CustomerKey == "" {
		cfg.CustomerKey = "stripe_customer_id"
	}
	if cfg.ValueKey == "" {
		cfg.ValueKey = "value"
	}
	r := &Reporter{ledger: ledger, cfg: cfg, now: cfg.Now, log: cfg.Logger, unmarked: map[string]MeterReport{}}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	b := cfg.Backend
	if b == nil {
		b = NewStripeBackend("", nil, r.log)
	}
	r.events = meterevent.Client{B: b, Key: cfg.APIKey}
	return r, nil
}

// Run makes a pass (ReportOnce) every Interval until ctx is done, then returns
// ctx's error. A pass's failures are logged and retried on later passes. Run is
// the Reporter's only goroutine; the server starts it and cancels ctx on
// shutdown (a send in flight is abandoned and made again on the next start).
func (r *Reporter) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := r.ReportOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "meter reporter: pass incomplete; the rest is retried", "error", err.Error())
		}
		t.Reset(r.cfg.Interval)
	}
}

// ReportOnce makes one pass: it writes the marks a previous pass could not, claims
// the closed periods' unreported calls (up to BatchSize minutes), sends the
// pending reports that are due (up to BatchSize) and counts the backlog. Its
// error joins what failed (stores; Stripe, as ErrStripe); what succeeded stays
// done.
func (r *Reporter) ReportOnce(ctx context.Context) (PassResult, error) {
	r.pass.Lock()
	defer r.pass.Unlock()
	var res PassResult
	now := r.now().UTC()
	cutoff := now.Add(-r.cfg.Grace).Truncate(r.cfg.Period)
	var errs []error
	for id, rep := range r.unmarked {
		if _, err := r.ledger.UpdateReport(ctx, rep); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		delete(r.unmarked, id)
	}
	if err := r.claim(ctx, now, cutoff, &res); err != nil {
		errs = append(errs, err)
	}
	if err := r.send(ctx, now, &res); err != nil {
		errs = append(errs, err)
	}
	if b, err := r.ledger.Backlog(ctx, cutoff); err != nil {
		errs = append(errs, err)
	} else {
		r.pending.Store(b.Unclaimed + b.Pending)
	}
	r.lastPass.Store(r.now().UnixNano())
	return res, errors.Join(errs...)
}

// Stats returns the Reporter's counters.
func (r *Reporter) Stats() ReporterStats {
	st := ReporterStats{
		Sent: r.sent.Load(), Duplicates: r.duplicates.Load(), Failed: r.failed.Load(),
		Abandoned: r.abandoned.Load(), Unbilled: r.unbilled.Load(), Pending: r.pending.Load(),
	}
	if n := r.lastPass.Load(); n != 0 {
		st.LastPass = time.Unix(0, n).UTC()
	}
	return st
}

// Totals returns the ledger's calls against the reported ones per user (all users
// when userID is empty) for [from, to): see MeterLedger.Totals. It is what an
// operator's usage report prints; the two agree once the Reporter caught up.
func (r *Reporter) Totals(ctx context.Context, userID string, from, to time.Time) ([]UsageTotal, error) {
	return r.ledger.Totals(ctx, userID, from, to)
}

// group is one key's unreported calls of one period.
type group struct {
	keyID, userID string
	period        time.Time
	parts         []UnreportedUsage // by bucket
}

// claim turns the closed periods' unreported calls into reports.
func (r *Reporter) claim(ctx context.Context, now, cutoff time.Time, res *PassResult) error {
	rows, err := r.ledger.Unreported(ctx, cutoff, r.cfg.BatchSize)
	if err != nil || len(rows) == 0 {
		return err
	}
	var groups []*group
	index := map[string]*group{}
	users := map[string]bool{}
	for _, u := range rows {
		period := u.Bucket.UTC().Truncate(r.cfg.Period)
		k := u.KeyID + "\x00" + strconv.FormatInt(period.Unix(), 10)
		g, ok := index[k]
		if !ok {
			g = &group{keyID: u.KeyID, userID: u.UserID, period: period}
			index[k] = g
			groups = append(groups, g)
		}
		g.parts = append(g.parts, u)
		users[u.UserID] = true
	}
	if len(rows) == r.cfg.BatchSize && len(groups) > 1 && r.cfg.Period > time.Minute {
		groups = groups[:len(groups)-1] // the batch may have cut the last period short
	}
	customers, err := r.customers(ctx, users)
	if err != nil {
		return fmt.Errorf("entitlement: meter reporter: customers: %w", err)
	}
	for _, g := range groups {
		first := g.parts[0]
		rep := MeterReport{
			Identifier: MeterIdentifier(g.keyID, first.Bucket, first.Claimed),
			KeyID:      g.keyID, UserID: g.userID,
			Period: g.period, Status: ReportPending, CreatedAt: now,
		}
		c, billed := customers[g.userID]
		if billed && !g.period.Add(r.cfg.Period).After(c.BoundAt) {
			billed = false // served before the user had a Stripe customer (an operator's grant, say)
		}
		rep.CustomerID = ""
		if billed {
			rep.CustomerID = c.ID
		}
		for _, p := range g.parts {
			rep.Calls += p.Calls - p.Claimed
		}
		switch {
		case rep.CustomerID == "":
			rep.Status = ReportUnbilled
		case g.period.Before(now.Add(-MeterEventMaxAge)):
			rep.Status = ReportAbandoned
		}
		ok, err := r.ledger.Claim(ctx, rep, g.parts)
		if err != nil {
			return err
		}
		if !ok {
			continue // another reporter claimed them first
		}
		res.Claimed++
		switch rep.Status {
		case ReportUnbilled:
			r.unbilled.Add(1)
		case ReportAbandoned:
			r.abandoned.Add(1)
			res.Abandoned++
			r.log.ErrorContext(ctx, "meter reporter: calls too old for Stripe were given up", "user", rep.UserID,
				"key", rep.KeyID, "period", rep.Period, "calls", rep.Calls)
		}
	}
	return nil
}

// customers returns the Stripe customer each user's calls are billed to; users
// without one are left out.
func (r *Reporter) customers(ctx context.Context, users map[string]bool) (map[string]Customer, error) {
	ids := make([]string, 0, len(users))
	for u := range users {
		ids = append(ids, u)
	}
	sort.Strings(ids)
	out := map[string]Customer{}
	err := r.cfg.Customers.Update(ctx, func(ctx context.Context, tx Tx) error {
		clear(out)
		for _, u := range ids {
			c, ok, err := billedCustomer(ctx, tx, u)
			if err != nil {
				return err
			}
			if ok {
				out[u] = c
			}
		}
		return nil
	})
	return out, err
}

// billedCustomer returns the customer a user's usage is billed to: the one that
// holds a subscription that has not ended (the one the metered price is on), else
// the customer bound first; ok is false when none is bound.
func billedCustomer(ctx context.Context, tx Tx, userID string) (_ Customer, ok bool, _ error) {
	customers, err := tx.CustomersOf(ctx, userID)
	if err != nil || len(customers) == 0 {
		return Customer{}, false, err
	}
	sort.SliceStable(customers, func(i, j int) bool { return customers[i].BoundAt.Before(customers[j].BoundAt) })
	for _, c := range customers {
		subs, err := tx.SubscriptionsOf(ctx, c.ID)
		if err != nil {
			return Customer{}, false, err
		}
		for _, sub := range subs {
			if sub.live() {
				return c, true, nil
			}
		}
	}
	return customers[0], true, nil
}

// send sends the due reports.
func (r *Reporter) send(ctx context.Context, now time.Time, res *PassResult) error {
	due, err := r.ledger.DueReports(ctx, now, r.cfg.BatchSize)
	if err != nil {
		return err
	}
	var errs []error
	for _, rep := range due {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		if _, ok := r.unmarked[rep.Identifier]; ok {
			continue // sent; its mark is still to be written
		}
		if rep.Period.Before(now.Add(-MeterEventMaxAge)) {
			rep.Status = ReportAbandoned
			if _, err := r.ledger.UpdateReport(ctx, rep); err != nil {
				errs = append(errs, err)
				continue
			}
			r.abandoned.Add(1)
			res.Abandoned++
			r.log.ErrorContext(ctx, "meter reporter: an event too old for Stripe was given up", "user", rep.UserID,
				"key", rep.KeyID, "period", rep.Period, "calls", rep.Calls, "attempts", rep.Attempts, "identifier", rep.Identifier)
			continue
		}
		duplicate, err := r.sendOne(ctx, rep)
		rep.Attempts++
		if err != nil {
			if ctx.Err() != nil {
				return errors.Join(append(errs, ctx.Err())...) // shutting down: not the event's failure
			}
			r.failed.Add(1)
			res.Failed++
			rep.NextAttempt = now.Add(r.backoff(rep.Attempts))
			if _, uerr := r.ledger.UpdateReport(ctx, rep); uerr != nil {
				errs = append(errs, uerr)
			}
			r.log.WarnContext(ctx, "meter reporter: send failed; retrying later", "identifier", rep.Identifier,
				"user", rep.UserID, "attempts", rep.Attempts, "retry_at", rep.NextAttempt, "error", err.Error())
			errs = append(errs, err)
			var se *stripeError
			if errors.As(err, &se) && se.transient() {
				break // Stripe is down or limiting: the rest would fail alike
			}
			continue
		}
		r.sent.Add(1)
		res.Sent++
		if duplicate {
			r.duplicates.Add(1)
		}
		rep.Status, rep.SentAt, rep.NextAttempt = ReportSent, now, time.Time{}
		if _, err := r.ledger.UpdateReport(ctx, rep); err != nil && !errors.Is(err, ErrNotFound) {
			r.unmarked[rep.Identifier] = rep
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sendOne sends rep as a meter event. duplicate reports that Stripe already had
// an event with its identifier: sent before, by this reporter or another.
func (r *Reporter) sendOne(ctx context.Context, rep MeterReport) (duplicate bool, err error) {
	params := &stripe.BillingMeterEventParams{
		EventName:  stripe.String(r.cfg.EventName),
		Identifier: stripe.String(rep.Identifier),
		Payload: map[string]string{
			r.cfg.CustomerKey: rep.CustomerID,
			r.cfg.ValueKey:    strconv.FormatInt(rep.Calls, 10),
		},
		Timestamp: stripe.Int64(rep.Period.Unix()),
	}
	params.Context = ctx
	if _, err := r.events.New(params); err != nil {
		if isDuplicateEvent(err, rep.Identifier) {
			return true, nil
		}
		return false, stripeFailure(ctx, "meter event", err)
	}
	return false, nil
}

// isDuplicateEvent reports whether err is Stripe refusing a meter event because an
// event with the identifier exists (400 invalid_request_error, "An event already
// exists with identifier …").
func isDuplicateEvent(err error, identifier string) bool {
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != http.StatusBadRequest || se.Type != stripe.ErrorTypeInvalidRequest {
		return false
	}
	return strings.Contains(se.Msg, "already exists") && strings.Contains(se.Msg, identifier)
}

// backoff is the wait before the attempt after attempts failed ones.
func (r *Reporter) backoff(attempts int) time.Duration {
	d := r.cfg.MinBackoff
	for i := 1; i < attempts && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.cfg.MaxBackoff)
}
