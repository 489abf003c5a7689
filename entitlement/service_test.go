package entitlement_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/problem/problemtest"
	stripe "github.com/stripe/stripe-go/v76"
)

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	keys := keystest.New(apimem.New())
	base := func(edit func(*entitlement.Config)) entitlement.Config {
		c := entitlement.Config{Catalog: testCatalog(), Keys: keys}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	tests := []struct {
		name string
		cfg  entitlement.Config
		ok   bool
	}{
		{"catalog and keys", base(nil), true},
		{"secret and seal key", base(func(c *entitlement.Config) { c.WebhookSecret, c.SealKey = "whsec_x", sealKey() }), true},
		{"secret without seal key", base(func(c *entitlement.Config) { c.WebhookSecret = "whsec_x" }), false},
		{"short seal key", base(func(c *entitlement.Config) { c.SealKey = []byte("short") }), false},
		{"secret with a delivery", base(func(c *entitlement.Config) { c.WebhookSecret, c.Delivery = "whsec_x", &recordingDelivery{} }), true},
		{"no catalog", base(func(c *entitlement.Config) { c.Catalog = nil }), false},
		{"no key issuer", base(func(c *entitlement.Config) { c.Keys = nil }), false},
		{"invalid catalog", base(func(c *entitlement.Config) {
			c.Catalog[planFree] = entitlement.Plan{Name: planFree, Prices: []string{"price_x"}}
		}), false},
	}
	for _, tt := range tests {
		_, err := entitlement.New(store, tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New error = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if _, err := entitlement.New(nil, base(nil)); err == nil {
		t.Error("New(nil store) succeeded")
	}
}

// The Service keeps a copy of the catalog: editing the caller's map later
// changes nothing.
func TestNewCopiesCatalog(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	keys := keystest.New(apimem.New())
	svc, err := entitlement.New(memstore.New(), entitlement.Config{Catalog: cat, Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	delete(cat, planGold)
	if _, err := svc.Grant(context.Background(), "user_1", planGold, 0); err != nil {
		t.Fatalf("Grant after the caller edited its catalog: %v", err)
	}
}

func TestWebhookUnconfiguredAndMethod(t *testing.T) {
	t.Parallel()
	svc, err := entitlement.New(memstore.New(), entitlement.Config{Catalog: testCatalog(), Keys: keystest.New(apimem.New())})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/billing/webhook", strings.NewReader("{}")))
	problemtest.Check(t, rec, http.StatusServiceUnavailable, problem.Detail(problem.WebhookNotConfigured))
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	rec = httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/billing/webhook", nil))
	problemtest.Check(t, rec, http.StatusMethodNotAllowed, problem.Detail(problem.MethodNotAllowed))
	if got := rec.Header().Get("Allow"); got != http.MethodPost {
		t.Errorf("Allow: %q, want POST", got)
	}
}

// Every sentinel answers with its own row of the problem table.
func TestErrorsAnswer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err    error
		status int
	}{
		{entitlement.ErrNotFound, http.StatusNotFound},
		{entitlement.ErrNothingToReveal, http.StatusNotFound},
		{entitlement.ErrUnknownPlan, http.StatusBadRequest},
		{entitlement.ErrWebhookNotConfigured, http.StatusServiceUnavailable},
		{entitlement.ErrWebhookTooLarge, http.StatusRequestEntityTooLarge},
		{entitlement.ErrWebhookUnreadable, http.StatusBadRequest},
		{entitlement.ErrBadSignature, http.StatusBadRequest},
		{entitlement.ErrMalformedEvent, http.StatusBadRequest},
		{entitlement.ErrAPIVersion, http.StatusBadRequest},
		{entitlement.ErrWebhookFailed, http.StatusServiceUnavailable},
	} {
		if status, _, dependency := problem.For(tt.err); status != tt.status || dependency {
			t.Errorf("%v answers %d (dependency %v), want %d", tt.err, status, dependency, tt.status)
		}
	}
}

func TestGrantAndRevoke(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, nil)
		for _, plan := range []string{"bronze", planFree} {
			if _, err := h.svc.Grant(ctx, "user_1", plan, 0); !errors.Is(err, entitlement.ErrUnknownPlan) {
				t.Fatalf("Grant(%s) = %v, want ErrUnknownPlan", plan, err)
			}
		}
		raw, err := h.svc.Grant(ctx, "user_1", planGold, 0)
		if err != nil {
			t.Fatal(err)
		}
		keys := h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
		if !strings.HasPrefix(raw, keystest.Prefix) || apikey.Hash(raw) != keys[0].Hash {
			t.Fatal("Grant's raw key is not the stored key")
		}
		if _, err := h.svc.Grant(ctx, "user_1", planPlatinum, 5); err != nil {
			t.Fatal(err)
		}
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: 5, total: 2})
		if ok, _ := h.svc.Pending(ctx, "user_1"); ok {
			t.Fatal("an admin grant left a key to reveal")
		}

		// A Stripe customer of the user whose subscription grants nothing does not
		// take the operator's grant away…
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "incomplete", priceGold, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: 5, total: 2})
		// …but a paid plan replaces it.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 3})

		n, err := h.svc.Revoke(ctx, "user_1")
		if err != nil || n != 1 {
			t.Fatalf("Revoke = %d, %v; want 1", n, err)
		}
		h.check("user_1", want{active: 0, total: 3})
		if ok, _ := h.svc.Pending(ctx, "user_1"); ok {
			t.Fatal("Revoke left a key to reveal")
		}
		// A renewal of the same subscription does not undo the operator's revocation;
		// a real change does.
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "invoice.paid", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, true, h.created)})
		h.check("user_1", want{active: 0, total: 3})
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 4})
	})
}

// fakeStripe is Stripe's view of subscriptions, for the SubscriptionReader.
type fakeStripe struct {
	mu    sync.Mutex
	subs  map[string]*stripe.Subscription
	err   error
	reads int
}

func (f *fakeStripe) Subscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	sub, ok := f.subs[id]
	if !ok {
		return nil, errors.New("no such subscription")
	}
	return sub, nil
}

func (f *fakeStripe) set(t *testing.T, obj map[string]any) {
	t.Helper()
	b, _ := json.Marshal(obj)
	var sub stripe.Subscription
	if err := json.Unmarshal(b, &sub); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[sub.ID] = &sub
}

// With a SubscriptionReader the Service decides on Stripe's current copy: a
// checkout alone grants, and a stale event payload loses to what Stripe says now.
func TestSubscriptionReader(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		fake := &fakeStripe{subs: map[string]*stripe.Subscription{}}
		h := newHarness(t, b, func(c *entitlement.Config) { c.Subscriptions = fake })
		fake.set(t, subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month))

		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})

		// The event says past_due, but Stripe says the subscription is active again.
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "past_due", pricePlatinum, month)})
		h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})

		// Stripe moved it to gold; the event that tells us still says platinum.
		fake.set(t, subscription(t, "sub_1", "cus_1", "active", priceGold, month))
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})

		// Stripe unreachable: the event's copy is used, with a warning. (An event
		// created before the last read would be stale; this one is newer.)
		fake.mu.Lock()
		fake.err = errors.New("connection refused")
		fake.mu.Unlock()
		h.expect(entitlement.OutcomeRevoked, ev{typ: "customer.subscription.updated", created: time.Now().Add(time.Minute).Unix(),
			obj: subscription(t, "sub_1", "cus_1", "unpaid", priceGold, month)})
		h.check("user_1", want{active: 0, total: 2})
		if !strings.Contains(h.logs.String(), "could not re-read the subscription") {
			t.Fatal("a failed re-read was not logged")
		}
		if fake.reads != 4 {
			t.Fatalf("Stripe was read %d times, want 4 (checkout and three updates)", fake.reads)
		}
	})
}

// StripeReader reads through stripe-go, here against an httptest server standing in
// for api.stripe.com.
func TestStripeReaderOverHTTP(t *testing.T) {
	t.Parallel()
	var gotAuth, gotVersion, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotVersion, gotPath = r.Header.Get("Authorization"), r.Header.Get("Stripe-Version"), r.URL.Path
		if r.URL.Path != "/v1/subscriptions/sub_http" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","message":"No such subscription"}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(subscription(t, "sub_http", "cus_http", "trialing", pricePlatinum, month))
	}))
	defer srv.Close()
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(srv.URL),
		HTTPClient:        srv.Client(),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	reader := entitlement.StripeReader("sk_test_reader", backend)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := reader.Subscription(ctx, "sub_http")
	if err != nil {
		t.Fatal(err)
	}
	if sub.ID != "sub_http" || sub.Status != stripe.SubscriptionStatusTrialing || sub.Customer.ID != "cus_http" || sub.Items.Data[0].Price.ID != pricePlatinum {
		t.Fatalf("read %+v", sub)
	}
	if gotPath != "/v1/subscriptions/sub_http" || gotAuth != "Bearer sk_test_reader" || gotVersion != stripe.APIVersion {
		t.Fatalf("request: path %q, auth %q, Stripe-Version %q", gotPath, gotAuth, gotVersion)
	}
	if _, err := reader.Subscription(ctx, "sub_missing"); err == nil {
		t.Fatal("a 404 read succeeded")
	}
}

// recordingDelivery hands keys to a test instead of sealing them; it can fail.
type recordingDelivery struct {
	mu   sync.Mutex
	fail bool
	raws map[string]string // key ID → raw
}

func (d *recordingDelivery) Deliver(ctx context.Context, tx entitlement.Tx, k apikey.Key, raw string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return errors.New("mail server down")
	}
	if d.raws == nil {
		d.raws = map[string]string{}
	}
	d.raws[k.ID] = raw
	return nil
}

// A custom Delivery receives the key in the issuing transaction; when it fails the
// webhook answers 503, the event is not recorded (on SQL, neither is the key), and
// Stripe's retry delivers the key.
func TestCustomDelivery(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		d := &recordingDelivery{fail: true}
		h := newHarness(t, b, func(c *entitlement.Config) { c.Delivery = d; c.SealKey = nil })
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")}
		body := h.build(&e)
		if status, detail := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusServiceUnavailable || !strings.Contains(detail, problem.Detail(problem.WebhookFailed)) {
			t.Fatalf("failed delivery: %d %s, want 503 %q", status, detail, problem.Detail(problem.WebhookFailed))
		}
		if strings.Contains(h.logs.String(), keystest.Prefix) {
			t.Fatal("a raw key reached the log")
		}
		d.mu.Lock()
		d.fail = false
		d.mu.Unlock()
		status, outcome := h.postRaw(body, sign(body, h.secret, time.Now()))
		if status != http.StatusOK || outcome != entitlement.OutcomeGranted {
			t.Fatalf("Stripe's retry: %d %s, want granted", status, outcome)
		}
		keys := h.keys("user_1")
		var active apikey.Key
		for _, k := range keys {
			if k.Active() {
				active = k
			}
		}
		if raw := d.raws[active.ID]; raw == "" || apikey.Hash(raw) != active.Hash {
			t.Fatalf("the active key was not delivered (keys %s)", h.describe(keys))
		}
		if h.db != nil && len(keys) != 1 {
			t.Fatalf("the key issued by the failed delivery's transaction stayed: %s", h.describe(keys))
		}
		if _, err := h.svc.Reveal(context.Background(), "user_1"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("Reveal with a custom delivery: %v", err)
		}
		if h.observedCount("checkout.session.completed", entitlement.OutcomeFailed) != 1 {
			t.Fatal("the failure was not observed")
		}
	})
}

// A Service built with a different SealKey cannot open the sealed key, and says so
// without destroying it.
func TestRevealWithWrongSealKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, backends[0], nil)
	h.bindGold("user_1", "cus_1", "sub_1")
	other, err := entitlement.New(h.store, entitlement.Config{Catalog: testCatalog(), Keys: h.issuer, SealKey: sealKey(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Reveal(context.Background(), "user_1"); err == nil || errors.Is(err, entitlement.ErrNothingToReveal) {
		t.Fatalf("Reveal under another SealKey: %v, want an error that is not ErrNothingToReveal", err)
	}
	if raw, err := h.svc.Reveal(context.Background(), "user_1"); err != nil || !strings.HasPrefix(raw, keystest.Prefix) {
		t.Fatalf("Reveal under the right key after a failed attempt: %v", err)
	}
}

func TestPruneEvents(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h := newHarness(t, backends[0], func(c *entitlement.Config) { c.Now = func() time.Time { return now } })
	first := h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
	now = now.Add(31 * 24 * time.Hour)
	n, err := h.svc.PruneEvents(context.Background(), 30*24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents = %d, %v; want 1", n, err)
	}
	// Forgotten, a redelivery is no longer a duplicate; desired state makes it
	// harmless (the same snapshot changes nothing new).
	h.expect(entitlement.OutcomeUnbound, ev{id: first.id, typ: first.typ, obj: first.obj, created: first.created})
}

// failingStore fails the transactions of a Store while fail is set, after fn has
// done its work: a database that breaks mid-transaction.
type failingStore struct {
	entitlement.Store
	mu   sync.Mutex
	fail bool
}

var errDatabaseDown = errors.New("database down")

func (f *failingStore) set(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

func (f *failingStore) Update(ctx context.Context, fn func(ctx context.Context, tx entitlement.Tx) error) error {
	return f.Store.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail {
			return errDatabaseDown
		}
		return nil
	})
}

// A store failure while a verified event is applied answers 503 with Retry-After
// (Stripe retries), records nothing, and the retry applies the event. On SQL the
// key issued in the failed transaction rolls back with it.
func TestStoreFailureAnswers503(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		var fs *failingStore
		wrapped := backend{name: b.name, open: func(t testing.TB) (entitlement.Store, apikey.Store, *sqlx.DB) {
			s, keys, db := b.open(t)
			fs = &failingStore{Store: s}
			return fs, keys, db
		}}
		h := newHarness(t, wrapped, nil)
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")}
		body := h.build(&e)

		fs.set(true)
		req := httptest.NewRequest(http.MethodPost, "/billing/webhook", strings.NewReader(string(body)))
		req.Header.Set("Stripe-Signature", sign(body, h.secret, time.Now()))
		rec := httptest.NewRecorder()
		h.svc.ServeHTTP(rec, req)
		problemtest.Check(t, rec, http.StatusServiceUnavailable, problem.Detail(problem.WebhookFailed))
		if rec.Header().Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if strings.Contains(rec.Body.String(), errDatabaseDown.Error()) {
			t.Error("the answer carries the store's error")
		}
		if !strings.Contains(h.logs.String(), errDatabaseDown.Error()) {
			t.Error("the store's error was not logged")
		}
		if h.observedCount("checkout.session.completed", entitlement.OutcomeFailed) != 1 {
			t.Error("the failure was not observed")
		}
		if ok, _ := h.svc.Pending(context.Background(), "user_1"); ok {
			t.Error("a failed transaction left a key to reveal")
		}
		if h.db != nil {
			h.check("user_1", want{active: 0, total: 0}) // the key rolled back
		}

		fs.set(false)
		status, outcome := h.postRaw(body, sign(body, h.secret, time.Now()))
		if status != http.StatusOK || outcome != entitlement.OutcomeGranted {
			t.Fatalf("Stripe's retry: %d %s, want 200 granted", status, outcome)
		}
		total := 1
		if h.db == nil {
			total = 2 // memory stores cannot roll the failed attempt's key back; the retry replaced it
		}
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: total})
		if raw, err := h.svc.Reveal(context.Background(), "user_1"); err != nil || !strings.HasPrefix(raw, keystest.Prefix) {
			t.Fatalf("Reveal after the retry: %v", err)
		}
	})
}

// A database that fails for real, at the transaction's last write (the
// entitlement record, after the key was issued and sealed), answers 503 too, and
// nothing of the event, its state or its key stays.
func TestDatabaseFailureAnswers503(t *testing.T) {
	t.Parallel()
	for _, b := range backends[1:] {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b, nil)
			h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
			e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")}
			body := h.build(&e)
			refuse, allow := `CREATE TRIGGER no_grants BEFORE INSERT ON entitlement_grants BEGIN SELECT RAISE(ABORT, 'grants refused'); END`, `DROP TRIGGER no_grants`
			if b.name == "postgres" {
				refuse, allow = `ALTER TABLE entitlement_grants ADD CONSTRAINT no_grants CHECK (user_id <> 'user_1')`, `ALTER TABLE entitlement_grants DROP CONSTRAINT no_grants`
			}
			if _, err := h.db.Exec(refuse); err != nil {
				t.Fatal(err)
			}
			status, detail := h.postRaw(body, sign(body, h.secret, time.Now()))
			if status != http.StatusServiceUnavailable || !strings.Contains(detail, problem.Detail(problem.WebhookFailed)) {
				t.Fatalf("with grants refused: %d %s, want 503", status, detail)
			}
			if !strings.Contains(h.logs.String(), "no_grants") && !strings.Contains(h.logs.String(), "grants refused") {
				t.Fatalf("the database's error was not logged:\n%s", h.logs)
			}
			h.check("user_1", want{active: 0, total: 0})
			if ok, _ := h.svc.Pending(context.Background(), "user_1"); ok {
				t.Fatal("the failed transaction left a sealed key")
			}
			if _, err := h.db.Exec(allow); err != nil {
				t.Fatal(err)
			}
			if status, outcome := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusOK || outcome != entitlement.OutcomeGranted {
				t.Fatalf("Stripe's retry: %d %s, want 200 granted (the event was not recorded)", status, outcome)
			}
			h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
		})
	}
}
