package entitlement_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/stripetest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

const (
	meterEvent = "api_calls"
	pathMeter  = "/v1/billing/meter_events"
)

// m10 is 10:00 UTC of the reporter tests' day; their clock starts there.
var m10 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func at(minutes int, seconds ...int) time.Time {
	t := m10.Add(time.Duration(minutes) * time.Minute)
	for _, s := range seconds {
		t = t.Add(time.Duration(s) * time.Second)
	}
	return t
}

// reporterHarness is a Service (for bindings) and a Reporter on one backend's
// store, with stripe-mock behind a recorder and an injected clock.
type reporterHarness struct {
	*harness
	ledger entitlement.MeterLedger
	mock   *stripetest.Mock
	rec    *stripetest.Recorder
	clk    *testenv.Clock
	logs   *testenv.Buffer
}

// newReporterHarness returns a harness whose Service (and so its customer
// bindings) and Reporters share the injected clock, starting at 10:00.
func newReporterHarness(t *testing.T, b backend, mock *stripetest.Mock) *reporterHarness {
	t.Helper()
	rh := &reporterHarness{mock: mock, rec: &stripetest.Recorder{}, clk: testenv.NewClock(at(0)), logs: &testenv.Buffer{}}
	rh.harness = newHarness(t, b, func(c *entitlement.Config) { c.Now = rh.clk.Now })
	ledger, ok := rh.store.(entitlement.MeterLedger)
	if !ok {
		t.Fatalf("the %s store is not a MeterLedger", b.name)
	}
	rh.ledger = ledger
	return rh
}

// reporter returns a new Reporter (a restart makes another) on the harness's
// ledger; edit may change its config.
func (h *reporterHarness) reporter(edit func(*entitlement.ReporterConfig)) *entitlement.Reporter {
	h.t.Helper()
	cfg := entitlement.ReporterConfig{
		EventName: meterEvent, APIKey: testAPIKey, Backend: h.mock.Backend(h.rec), Customers: h.store,
		Now: h.clk.Now, Logger: slog.New(slog.NewTextHandler(h.logs, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := entitlement.NewReporter(h.ledger, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *reporterHarness) record(recs ...entitlement.UsageRecord) {
	h.t.Helper()
	if err := h.ledger.Record(context.Background(), "", recs); err != nil {
		h.t.Fatal(err)
	}
}

// pass runs ReportOnce at now and returns the meter events it sent.
func (h *reporterHarness) pass(r *entitlement.Reporter, now time.Time) ([]sentEvent, entitlement.PassResult, error) {
	h.t.Helper()
	h.clk.Set(now)
	h.rec.Reset()
	res, err := r.ReportOnce(context.Background())
	var out []sentEvent
	for _, req := range h.rec.Requests(pathMeter) {
		ts, _ := strconv.ParseInt(req.Form.Get("timestamp"), 10, 64)
		out = append(out, sentEvent{
			name: req.Form.Get("event_name"), identifier: req.Form.Get("identifier"),
			customer: req.Form.Get("payload[stripe_customer_id]"), value: req.Form.Get("payload[value]"),
			timestamp: time.Unix(ts, 0).UTC(), failed: req.Failed,
		})
	}
	return out, res, err
}

// sentEvent is a meter event as the reporter sent it.
type sentEvent struct {
	name, identifier, customer, value string
	timestamp                         time.Time
	failed                            bool
}

func event(customer, keyID string, bucket time.Time, offset, calls int64) sentEvent {
	return sentEvent{name: meterEvent, identifier: entitlement.MeterIdentifier(keyID, bucket, offset),
		customer: customer, value: strconv.FormatInt(calls, 10), timestamp: bucket}
}

func usageRec(key, user string, bucket time.Time, calls int64) entitlement.UsageRecord {
	return entitlement.UsageRecord{KeyID: key, UserID: user, Bucket: bucket, Calls: calls}
}

func checkEvents(t *testing.T, what string, got []sentEvent, want ...sentEvent) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: sent\n %+v\nwant\n %+v", what, got, want)
	}
}

func totals(t *testing.T, r *entitlement.Reporter, user string, from, to time.Time) []entitlement.UsageTotal {
	t.Helper()
	tot, err := r.Totals(context.Background(), user, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return tot
}

// The reporter sends each closed minute of each key whose user has a Stripe
// customer, once, with a deterministic identifier; calls recorded into a
// reported minute go out as an event of their own; users without a customer are
// unbilled; a restarted reporter sends nothing twice; the ledger and what was
// reported agree.
func TestReporter(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	eachBackend(t, func(t *testing.T, b backend) {
		h := newReporterHarness(t, b, mock)
		h.bindGold("user_1", "cus_1", "sub_1")
		r := h.reporter(nil)
		h.record(
			usageRec("key_a", "user_1", at(0, 10), 5), usageRec("key_a", "user_1", at(1, 59), 3),
			usageRec("key_b", "user_1", at(1), 2), // the user rotated their key
			usageRec("key_c", "user_2", at(0), 7), // no Stripe customer
			usageRec("key_d", "user_3", at(0), 6), // an operator's grant, before the purchase below
		)
		// 10:01:30: a minute of grace after 10:00's end is not over yet.
		sent, _, err := h.pass(r, at(1, 30))
		if err != nil || len(sent) != 0 {
			t.Fatalf("before the grace ran out: sent %+v, %v", sent, err)
		}
		sent, res, err := h.pass(r, at(2, 30))
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, "10:00 closed", sent, event("cus_1", "key_a", at(0), 0, 5))
		if res.Claimed != 3 || res.Sent != 1 {
			t.Fatalf("pass result %+v, want 3 claims (two unbilled) and 1 send", res)
		}
		// user_3 buys a plan at 10:02:40; the new key's calls from then on are billed.
		h.clk.Set(at(2, 40))
		h.bindGold("user_3", "cus_3", "sub_3")
		h.record(usageRec("key_e", "user_3", at(2, 50), 4))
		sent, _, _ = h.pass(r, at(4))
		checkEvents(t, "10:01 and 10:02 closed", sent,
			event("cus_1", "key_a", at(1), 0, 3), event("cus_1", "key_b", at(1), 0, 2), event("cus_3", "key_e", at(2), 0, 4))
		sent, _, _ = h.pass(r, at(4, 30))
		checkEvents(t, "nothing new", sent)

		// A flush that came late adds to 10:00: its own event, its own identifier.
		h.record(usageRec("key_a", "user_1", at(0, 45), 4))
		sent, _, _ = h.pass(r, at(5))
		checkEvents(t, "late calls", sent, event("cus_1", "key_a", at(0), 5, 4))
		if sent[0].identifier == entitlement.MeterIdentifier("key_a", at(0), 0) {
			t.Fatal("the late calls reused the first event's identifier (Stripe would drop them)")
		}

		// A restart: a new Reporter on the same database sends nothing again.
		sent, _, _ = h.pass(h.reporter(nil), at(6))
		checkEvents(t, "after a restart", sent)

		got := totals(t, r, "", at(0), at(60))
		want := []entitlement.UsageTotal{
			{UserID: "user_1", Served: 14, Reported: 14},
			{UserID: "user_2", Served: 7, Unbilled: 7},
			{UserID: "user_3", Served: 10, Reported: 4, Unbilled: 6},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Totals =\n %+v\nwant\n %+v", got, want)
		}
		st := r.Stats()
		if st.Sent != 5 || st.Unbilled != 2 || st.Failed != 0 || st.Pending != 0 || st.LastPass.IsZero() {
			t.Fatalf("Stats = %+v", st)
		}
	})
}

// Failed sends are retried with backoff, with the same identifier and value; a
// network failure or a server error ends the pass, a refusal of one event does
// not.
func TestReporterRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	eachBackend(t, func(t *testing.T, b backend) {
		h := newReporterHarness(t, b, mock)
		h.bindGold("user_1", "cus_1", "sub_1")
		r := h.reporter(func(c *entitlement.ReporterConfig) { c.MinBackoff, c.MaxBackoff = 10*time.Second, 35*time.Second })
		h.record(usageRec("key_a", "user_1", at(0), 5), usageRec("key_b", "user_1", at(0), 2))

		h.rec.SetFault(func(*stripetest.Request) (*http.Response, error) {
			return stripetest.StripeError(http.StatusInternalServerError, "api_error", "Something went wrong"), nil
		})
		sent, res, err := h.pass(r, at(2))
		if !errors.Is(err, entitlement.ErrStripe) || res.Failed != 1 || len(sent) != 1 || !sent[0].failed {
			t.Fatalf("Stripe down: sent %+v, %+v, %v; want one failed attempt that ends the pass", sent, res, err)
		}
		x := sent[0].identifier
		sent, _, _ = h.pass(r, at(2, 5)) // the other one is due; the failed one waits 10 s
		if len(sent) != 1 || sent[0].identifier == x {
			t.Fatalf("second pass sent %+v, want the other event", sent)
		}
		y := sent[0].identifier

		// Stripe is back but refuses one event (not a server error): the pass goes on.
		h.rec.SetFault(func(req *stripetest.Request) (*http.Response, error) {
			if req.Form.Get("identifier") == y {
				return nil, nil
			}
			return stripetest.StripeError(http.StatusBadRequest, "invalid_request_error", "No such customer"), nil
		})
		sent, res, _ = h.pass(r, at(2, 15))
		if len(sent) != 2 || res.Failed != 1 || res.Sent != 1 {
			t.Fatalf("one refusal: sent %+v, %+v; want both tried, one accepted", sent, res)
		}
		refused := sent[0]
		if refused.identifier == y {
			refused = sent[1]
		}
		if refused.identifier != x {
			t.Fatalf("the refused event is %s, want %s", refused.identifier, x)
		}
		// It failed twice: the next try is 20 s later, then 35 s (the cap), twice.
		for _, step := range []struct {
			at    time.Time
			tries int
		}{{at(2, 34), 0}, {at(2, 35), 1}, {at(3, 9), 0}, {at(3, 10), 1}} {
			sent, _, _ = h.pass(r, step.at)
			if len(sent) != step.tries || (step.tries == 1 && !reflect.DeepEqual(sent[0], refused)) {
				t.Fatalf("at %s: sent %+v, want %d tries of %+v", step.at.Format(time.TimeOnly), sent, step.tries, refused)
			}
		}
		h.rec.SetFault(nil)
		sent, _, _ = h.pass(r, at(5))
		refused.failed = false
		checkEvents(t, "Stripe back", sent, refused)
		if got := totals(t, r, "user_1", at(0), at(60)); got[0].Reported != 7 || got[0].Pending != 0 {
			t.Fatalf("Totals = %+v", got)
		}
		if st := r.Stats(); st.Sent != 2 || st.Failed != 5 {
			t.Fatalf("Stats = %+v, want 2 sent, 5 failed", st)
		}
	})
}

// markFailing is a MeterLedger whose UpdateReport fails while down is set: the
// database fails right after Stripe accepted an event.
type markFailing struct {
	entitlement.MeterLedger
	mu   sync.Mutex
	down bool
}

func (m *markFailing) set(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func (m *markFailing) UpdateReport(ctx context.Context, r entitlement.MeterReport) (bool, error) {
	m.mu.Lock()
	down := m.down
	m.mu.Unlock()
	if down {
		return false, errDatabaseDown
	}
	return m.MeterLedger.UpdateReport(ctx, r)
}

// A send whose mark fails is not sent again by the same reporter: the mark is
// kept and written once the database is back. A restart before the mark is
// written sends the event again, with the same identifier and value, and Stripe's
// refusal of the duplicate counts as the success it is: billed once.
func TestReporterMarkFailures(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	eachBackend(t, func(t *testing.T, b backend) {
		h := newReporterHarness(t, b, mock)
		h.bindGold("user_1", "cus_1", "sub_1")
		flaky := &markFailing{MeterLedger: h.ledger}
		h.ledger = flaky
		r := h.reporter(nil)
		h.record(usageRec("key_a", "user_1", at(0), 5))
		want := event("cus_1", "key_a", at(0), 0, 5)

		flaky.set(true)
		sent, _, err := h.pass(r, at(2))
		if !errors.Is(err, errDatabaseDown) {
			t.Fatalf("a failed mark: %v, want the store's error", err)
		}
		checkEvents(t, "sent, mark failed", sent, want)
		sent, _, _ = h.pass(r, at(3))
		checkEvents(t, "database still down", sent)
		flaky.set(false)
		sent, _, err = h.pass(r, at(4))
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, "database back", sent)
		if got := totals(t, r, "user_1", at(0), at(60)); got[0].Reported != 5 || got[0].Pending != 0 {
			t.Fatalf("Totals = %+v, want 5 reported", got)
		}

		// Crash between the send and the mark: the next process sends it again.
		h.record(usageRec("key_a", "user_1", at(10), 3))
		again := event("cus_1", "key_a", at(10), 0, 3)
		flaky.set(true)
		sent, _, _ = h.pass(r, at(12))
		checkEvents(t, "sent before the crash", sent, again)
		flaky.set(false)
		restarted := h.reporter(nil)
		var seen []string
		h.rec.SetFault(func(req *stripetest.Request) (*http.Response, error) {
			id := req.Form.Get("identifier")
			seen = append(seen, id)
			return stripetest.StripeError(http.StatusBadRequest, "invalid_request_error", "An event already exists with identifier "+id+"."), nil
		})
		sent, res, err := h.pass(restarted, at(13))
		if err != nil || res.Sent != 1 || len(sent) != 1 {
			t.Fatalf("after the restart: sent %+v, %+v, %v; want the duplicate taken as sent", sent, res, err)
		}
		if sent[0].identifier != again.identifier || sent[0].value != again.value {
			t.Fatalf("the resend %+v differs from the send %+v", sent[0], again)
		}
		h.rec.SetFault(nil)
		if st := restarted.Stats(); st.Duplicates != 1 || st.Sent != 1 || st.Failed != 0 {
			t.Fatalf("Stats after the duplicate = %+v", st)
		}
		sent, _, _ = h.pass(restarted, at(14))
		checkEvents(t, "after the duplicate", sent)
		if got := totals(t, r, "user_1", at(0), at(60)); got[0].Reported != 8 || got[0].Served != 8 {
			t.Fatalf("Totals = %+v, want 8 served and 8 reported", got)
		}
	})
}

// Reporting hourly sums a key's minutes into one event at the hour's start;
// periods older than Stripe accepts are given up, loudly; custom payload keys
// are used.
func TestReporterPeriodAndAge(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	h := newReporterHarness(t, backends[0], mock)
	old := m10.Add(-40 * 24 * time.Hour)
	h.clk.Set(old.Add(-time.Hour)) // a customer for 40 days
	h.bindGold("user_1", "cus_1", "sub_1")
	r := h.reporter(func(c *entitlement.ReporterConfig) {
		c.Period, c.CustomerKey, c.ValueKey = time.Hour, "customer", "calls"
	})
	h.record(usageRec("key_a", "user_1", at(0), 5), usageRec("key_a", "user_1", at(59), 3), usageRec("key_a", "user_1", at(60), 1))
	h.record(usageRec("key_a", "user_1", old, 9))
	if sent, res, _ := h.pass(r, at(60, 30)); len(sent) != 0 || res.Abandoned != 1 {
		t.Fatalf("within the hour's grace: sent %+v (%+v); want nothing sent, the old calls given up", sent, res)
	}
	_, res, err := h.pass(r, at(61, 1))
	if err != nil || res.Sent != 1 || res.Abandoned != 0 {
		t.Fatalf("pass = %+v, %v; want 1 sent", res, err)
	}
	reqs := h.rec.Requests(pathMeter)
	if len(reqs) != 1 {
		t.Fatalf("%d meter events, want 1", len(reqs))
	}
	f := reqs[0].Form
	if f.Get("payload[customer]") != "cus_1" || f.Get("payload[calls]") != "8" || f.Get("timestamp") != strconv.FormatInt(m10.Unix(), 10) ||
		f.Get("identifier") != entitlement.MeterIdentifier("key_a", at(0), 0) || f.Has("payload[value]") {
		t.Fatalf("hourly event %v", f)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "too old for Stripe") || !strings.Contains(logs, "calls=9") {
		t.Fatalf("the given-up calls were not logged:\n%s", h.logs)
	}
	if got := totals(t, r, "user_1", old.Truncate(time.Hour), at(120)); got[0].Abandoned != 9 || got[0].Reported != 8 || got[0].Unclaimed() != 1 {
		t.Fatalf("Totals = %+v", got)
	}
	if _, err := entitlement.NewReporter(h.ledger, entitlement.ReporterConfig{EventName: "x", APIKey: "k", Customers: h.store, Period: 7 * time.Minute}); err == nil {
		t.Fatal("a period that does not divide a day was accepted")
	}
}

// Two reporters on one database (two replicas) claim exclusively: every call is
// in exactly one event, and an event both send carries one value.
func TestReporterReplicas(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	for _, b := range backends[1:] {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := newReporterHarness(t, b, mock)
			h.bindGold("user_1", "cus_1", "sub_1")
			var recs []entitlement.UsageRecord
			for i := range 40 {
				recs = append(recs, usageRec(fmt.Sprintf("key_%d", i%4), "user_1", at(i), int64(1+i)))
			}
			h.record(recs...)
			h.clk.Set(at(60))
			r1, r2 := h.reporter(func(c *entitlement.ReporterConfig) { c.BatchSize = 7 }), h.reporter(func(c *entitlement.ReporterConfig) { c.BatchSize = 7 })
			for range 8 {
				var wg sync.WaitGroup
				for _, r := range []*entitlement.Reporter{r1, r2} {
					wg.Go(func() {
						if _, err := r.ReportOnce(context.Background()); err != nil {
							t.Errorf("ReportOnce: %v", err)
						}
					})
				}
				wg.Wait()
			}
			values := map[string]string{}
			var sum int64
			for _, req := range h.rec.Requests(pathMeter) {
				id, v := req.Form.Get("identifier"), req.Form.Get("payload[value]")
				if prev, ok := values[id]; ok {
					if prev != v {
						t.Fatalf("identifier %s sent with values %s and %s", id, prev, v)
					}
					continue // Stripe counts an identifier once
				}
				values[id] = v
				n, _ := strconv.ParseInt(v, 10, 64)
				sum += n
			}
			if want := int64(40 * 41 / 2); sum != want || len(values) != 40 {
				t.Fatalf("%d distinct events worth %d calls, want 40 worth %d", len(values), sum, want)
			}
			if got := totals(t, r1, "user_1", at(0), at(60)); got[0].Reported != 820 || got[0].Served != 820 {
				t.Fatalf("Totals = %+v", got)
			}
		})
	}
}

// Run makes passes until its context ends.
func TestReporterRun(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	h := newReporterHarness(t, backends[0], mock)
	h.bindGold("user_1", "cus_1", "sub_1")
	r := h.reporter(func(c *entitlement.ReporterConfig) { c.Interval = 10 * time.Millisecond })
	h.clk.Set(at(5))
	h.record(usageRec("key_a", "user_1", at(0), 5))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for r.Stats().Sent == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h.record(usageRec("key_a", "user_1", at(1), 2))
	for r.Stats().Sent < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if st := r.Stats(); st.Sent != 2 {
		t.Fatalf("Stats = %+v, want 2 sent", st)
	}
}

func TestNewReporterChecksConfig(t *testing.T) {
	t.Parallel()
	h := newHarness(t, backends[0], nil)
	ledger := h.store.(entitlement.MeterLedger)
	ok := entitlement.ReporterConfig{EventName: "api_calls", APIKey: testAPIKey, Customers: h.store}
	if _, err := entitlement.NewReporter(ledger, ok); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*entitlement.ReporterConfig){
		"no event name":  func(c *entitlement.ReporterConfig) { c.EventName = "" },
		"no API key":     func(c *entitlement.ReporterConfig) { c.APIKey = "" },
		"no customers":   func(c *entitlement.ReporterConfig) { c.Customers = nil },
		"30 s period":    func(c *entitlement.ReporterConfig) { c.Period = 30 * time.Second },
		"100 min period": func(c *entitlement.ReporterConfig) { c.Period = 100 * time.Minute },
		"negative hours": func(c *entitlement.ReporterConfig) { c.Period = -time.Hour },
	} {
		cfg := ok
		edit(&cfg)
		if _, err := entitlement.NewReporter(ledger, cfg); err == nil {
			t.Errorf("%s: NewReporter succeeded", name)
		}
	}
	if _, err := entitlement.NewReporter(nil, ok); err == nil {
		t.Error("NewReporter(nil) succeeded")
	}
}

// MeterIdentifier is deterministic, depends on key, minute and offset only, and
// fits Stripe's 100 characters.
func TestMeterIdentifier(t *testing.T) {
	t.Parallel()
	id := entitlement.MeterIdentifier("key_a", at(0, 59), 0)
	if id != entitlement.MeterIdentifier("key_a", at(0).In(time.FixedZone("X", 3600)), 0) || len(id) != 35 || id[:3] != "tg_" {
		t.Fatalf("MeterIdentifier = %q", id)
	}
	for _, other := range []string{
		entitlement.MeterIdentifier("key_b", at(0), 0),
		entitlement.MeterIdentifier("key_a", at(1), 0),
		entitlement.MeterIdentifier("key_a", at(0), 1),
	} {
		if other == id {
			t.Fatalf("two reports share the identifier %s", id)
		}
	}
}
