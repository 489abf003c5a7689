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
	"github.com/releaseradar/tollgate/entitlement/memstore"
	stripe "github.com/stripe/stripe-go/v76"
)

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	store := memstore.New(apimem.New())
	tests := []struct {
		name string
		cfg  entitlement.Config
		ok   bool
	}{
		{"zero config", entitlement.Config{}, true},
		{"secret and seal key", entitlement.Config{WebhookSecret: "whsec_x", SealKey: sealKey()}, true},
		{"secret without seal key", entitlement.Config{WebhookSecret: "whsec_x"}, false},
		{"short seal key", entitlement.Config{SealKey: []byte("short")}, false},
		{"secret with a delivery", entitlement.Config{WebhookSecret: "whsec_x", Delivery: &recordingDelivery{}}, true},
		{"price to unknown plan", entitlement.Config{Prices: map[string]string{"price_x": "gold"}}, false},
		{"price to the free plan", entitlement.Config{Prices: map[string]string{"price_x": entitlement.Public}}, false},
		{"prices to paid plans", entitlement.Config{Prices: map[string]string{"a": entitlement.Pro, "b": entitlement.Team}}, true},
	}
	for _, tt := range tests {
		_, err := entitlement.New(store, tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New error = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if _, err := entitlement.New(nil, entitlement.Config{}); err == nil {
		t.Error("New(nil store) succeeded")
	}
}

func TestWebhookUnconfiguredAndMethod(t *testing.T) {
	t.Parallel()
	svc, err := entitlement.New(memstore.New(apimem.New()), entitlement.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method string
		status int
	}{{http.MethodPost, http.StatusServiceUnavailable}, {http.MethodGet, http.StatusMethodNotAllowed}} {
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, httptest.NewRequest(tt.method, "/billing/webhook", strings.NewReader("{}")))
		if rec.Code != tt.status || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s without a secret: %d %s, want %d problem+json", tt.method, rec.Code, rec.Header().Get("Content-Type"), tt.status)
		}
	}
}

func TestGrantAndRevoke(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, nil)
		for _, plan := range []string{"gold", entitlement.Public} {
			if _, err := h.svc.Grant(ctx, "user_1", plan, 0); !errors.Is(err, entitlement.ErrUnknownPlan) {
				t.Fatalf("Grant(%s) = %v, want ErrUnknownPlan", plan, err)
			}
		}
		raw, err := h.svc.Grant(ctx, "user_1", entitlement.Pro, 0)
		if err != nil {
			t.Fatal(err)
		}
		keys := h.check("user_1", want{active: 1, plan: entitlement.Pro, limit: 10_000, total: 1})
		if !strings.HasPrefix(raw, apikey.Prefix) || apikey.Hash(raw) != keys[0].Hash {
			t.Fatal("Grant's raw key is not the stored key")
		}
		if _, err := h.svc.Grant(ctx, "user_1", entitlement.Team, 5); err != nil {
			t.Fatal(err)
		}
		h.check("user_1", want{active: 1, plan: entitlement.Team, limit: 5, total: 2})
		if ok, _ := h.svc.Pending(ctx, "user_1"); ok {
			t.Fatal("an admin grant left a key to reveal")
		}

		// A Stripe customer of the user whose subscription grants nothing does not
		// take the operator's grant away…
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "incomplete", pricePro, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.check("user_1", want{active: 1, plan: entitlement.Team, limit: 5, total: 2})
		// …but a paid plan replaces it.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePro, month)})
		h.check("user_1", want{active: 1, plan: entitlement.Pro, limit: 10_000, total: 3})

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
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "invoice.paid", obj: invoice(t, "in_1", "cus_1", "sub_1", pricePro, true, h.created)})
		h.check("user_1", want{active: 0, total: 3})
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceTeam, month)})
		h.check("user_1", want{active: 1, plan: entitlement.Team, limit: 100_000, total: 4})
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
		fake.set(t, subscription(t, "sub_1", "cus_1", "active", priceTeam, month))

		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.check("user_1", want{active: 1, plan: entitlement.Team, limit: 100_000, total: 1})

		// The event says past_due, but Stripe says the subscription is active again.
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "past_due", priceTeam, month)})
		h.check("user_1", want{active: 1, plan: entitlement.Team, limit: 100_000, total: 1})

		// Stripe moved it to pro; the event that tells us still says team.
		fake.set(t, subscription(t, "sub_1", "cus_1", "active", pricePro, month))
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceTeam, month)})
		h.check("user_1", want{active: 1, plan: entitlement.Pro, limit: 10_000, total: 2})

		// Stripe unreachable: the event's copy is used, with a warning. (An event
		// created before the last read would be stale; this one is newer.)
		fake.mu.Lock()
		fake.err = errors.New("connection refused")
		fake.mu.Unlock()
		h.expect(entitlement.OutcomeRevoked, ev{typ: "customer.subscription.updated", created: time.Now().Add(time.Minute).Unix(),
			obj: subscription(t, "sub_1", "cus_1", "unpaid", pricePro, month)})
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
		_ = json.NewEncoder(w).Encode(subscription(t, "sub_http", "cus_http", "trialing", priceTeam, month))
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
	if sub.ID != "sub_http" || sub.Status != stripe.SubscriptionStatusTrialing || sub.Customer.ID != "cus_http" || sub.Items.Data[0].Price.ID != priceTeam {
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
// webhook answers 500, nothing is recorded, and Stripe's retry delivers the key.
func TestCustomDelivery(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		d := &recordingDelivery{fail: true}
		h := newHarness(t, b, func(c *entitlement.Config) { c.Delivery = d; c.SealKey = nil })
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePro, month)})
		e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")}
		body := h.build(&e)
		if status, detail := h.postRaw(body, sign(body, h.secret, time.Now())); status != http.StatusInternalServerError {
			t.Fatalf("failed delivery: %d %s, want 500", status, detail)
		}
		if strings.Contains(h.logs.String(), "rr_live_") {
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
			t.Fatalf("the active key was not delivered (keys %s)", describe(keys))
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
	store := memstore.New(apimem.New())
	h := newHarness(t, backend{name: "memstore", open: func(testing.TB) (entitlement.Store, *sqlx.DB) { return store, nil }}, nil)
	h.bindPro("user_1", "cus_1", "sub_1")
	other, err := entitlement.New(store, entitlement.Config{SealKey: sealKey(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Reveal(context.Background(), "user_1"); err == nil || errors.Is(err, entitlement.ErrNothingToReveal) {
		t.Fatalf("Reveal under another SealKey: %v, want an error that is not ErrNothingToReveal", err)
	}
	if raw, err := h.svc.Reveal(context.Background(), "user_1"); err != nil || !strings.HasPrefix(raw, apikey.Prefix) {
		t.Fatalf("Reveal under the right key after a failed attempt: %v", err)
	}
}

func TestPruneEvents(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h := newHarness(t, backends[0], func(c *entitlement.Config) { c.Now = func() time.Time { return now } })
	first := h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePro, month)})
	now = now.Add(31 * 24 * time.Hour)
	n, err := h.svc.PruneEvents(context.Background(), 30*24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents = %d, %v; want 1", n, err)
	}
	// Forgotten, a redelivery is no longer a duplicate; desired state makes it
	// harmless (the same snapshot changes nothing new).
	h.expect(entitlement.OutcomeUnbound, ev{id: first.id, typ: first.typ, obj: first.obj, created: first.created})
}
