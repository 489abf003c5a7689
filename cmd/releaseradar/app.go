package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/entitlement"
	entsql "github.com/releaseradar/tollgate/entitlement/sqlstore"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/ratelimit"
)

// app is what both the server and the admin commands need: the database with its
// schema in place, the stores, the gate that issues and checks keys, the dashboard
// token signer and the entitlement service.
type app struct {
	cfg    config
	log    *slog.Logger
	db     *sqlx.DB
	keys   *aksql.Store
	quotas *qsql.Store
	gate   *tollgate.Gate
	ent    *entitlement.Service
	// ents is the entitlement store: the Service's state, and the usage ledger
	// the gate writes and the meter reporter reads.
	ents   *entsql.Store
	signer *session.Signer
	// reporter sends the ledger's closed minutes to the Stripe Billing Meter; nil
	// unless RR_STRIPE_METER_EVENT and RR_STRIPE_API_KEY are both set.
	reporter *entitlement.Reporter
	now      func() time.Time
}

// cycle is the quota cycle every key runs on.
const cycle = quota.DefaultCycle

// keyPrefix starts every ReleaseRadar key, so that leaked keys are recognisable to
// secret scanners and to people.
const keyPrefix = "rr_live_"

// hooks are what the server plugs into the gate and the billing service; the
// admin commands leave them zero.
type hooks struct {
	counters       ratelimit.Store // nil: in process
	onError        func(w http.ResponseWriter, r *http.Request, err error)
	observe        func(tollgate.Decision)
	observeWebhook func(eventType, outcome string)
}

// openApp opens the database, bootstraps every store's schema, loads the data set
// into an empty database and builds the services. Its errors name the setting
// they concern.
func openApp(ctx context.Context, cfg config, log *slog.Logger, h hooks) (*app, error) {
	db, err := openDB(ctx, cfg.DatabaseURL, cfg.RequestTimeout)
	if err != nil {
		return nil, &settingError{env: "RR_DATABASE_URL", err: err}
	}
	a := &app{
		cfg: cfg,
		log: log,
		db:  db,
		keys: aksql.New(db, aksql.Config{
			DefaultPlan: legacyPlan,
		}),
		quotas: qsql.New(db, qsql.Config{
			Cycle:        cycle,
			DefaultLimit: cfg.Catalog[legacyPlan].MonthlyCallLimit,
		}),
		now: time.Now,
	}
	if err := a.init(ctx, h); err != nil {
		if a.gate != nil {
			a.gate.Close(ctx)
		}
		db.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) init(ctx context.Context, h hooks) error {
	ents := entsql.New(a.db)
	a.ents = ents
	gate, err := tollgate.New(tollgate.Stores{Keys: a.keys, Quotas: a.quotas, Counters: h.counters}, a.cfg.Catalog, tollgate.Config{
		KeyPrefix:      keyPrefix,
		AnonymousPlan:  planPublic,
		TrustedProxies: a.cfg.TrustedProxies,
		Cycle:          cycle,
		// Now stays nil: the gate then reads the wall clock once a request
		// (a.now is the wall clock too; a Config.Now is read at every step).
		OnError: h.onError,
		Observe: h.observe,
		Ledger:  ents,
		Logger:  a.log,
	})
	if err != nil {
		return &settingError{env: "RR_PLAN_RATES", err: err}
	}
	a.gate = gate

	dbErr := func(what string, err error) error {
		return &settingError{env: "RR_DATABASE_URL", err: fmt.Errorf("%s: %w", what, err)}
	}
	steps := []struct {
		what string
		run  func(context.Context) error
	}{
		{"api key and quota schema", a.gate.Bootstrap},
		{"entitlement schema", ents.Bootstrap},
		{"settings schema", func(ctx context.Context) error { return sqldb.Bootstrap(ctx, a.db, settingsTable) }},
		{"sign-in link schema", a.loginLinks().Bootstrap},
		{"market schema", func(ctx context.Context) error { return market.Bootstrap(ctx, a.db) }},
		{"market data set", func(ctx context.Context) error {
			loaded, err := market.LoadIfEmpty(ctx, a.db)
			if loaded {
				a.log.Info("loaded the bundled sample data set into the empty database")
			}
			return err
		}},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			return dbErr(s.what, err)
		}
	}

	secret := a.cfg.SessionSecret
	if secret == nil {
		if secret, err = storedSecret(ctx, a.db, sessionSecretSetting); err != nil {
			return &settingError{env: "RR_SESSION_SECRET", err: err}
		}
	}
	if a.signer, err = session.New(secret, session.Config{Now: a.clock}); err != nil {
		return &settingError{env: "RR_SESSION_SECRET", err: err}
	}

	// One backend on RR_STRIPE_API_BASE for every call to Stripe: subscription
	// reads, Checkout and Portal sessions, meter events.
	var (
		subs    entitlement.SubscriptionReader
		billing entitlement.BillingConfig
		backend = entitlement.NewStripeBackend(a.cfg.StripeAPIBase, nil, a.log)
	)
	if a.cfg.StripeAPIKey != "" {
		subs = entitlement.StripeReader(a.cfg.StripeAPIKey, backend)
		page := a.cfg.PublicURL + web.PagePath
		billing = entitlement.BillingConfig{
			APIKey:     a.cfg.StripeAPIKey,
			Backend:    backend,
			SuccessURL: page + "?checkout=success",
			CancelURL:  page + "?checkout=cancel",
			ReturnURL:  page,
		}
	}
	a.ent, err = entitlement.New(ents, entitlement.Config{
		Catalog:       a.cfg.Catalog,
		Keys:          a.gate,
		WebhookSecret: a.cfg.WebhookSecret,
		Livemode:      a.cfg.Livemode,
		SealKey:       sealKey(secret),
		Subscriptions: subs,
		Billing:       billing,
		RotateGrace:   a.cfg.RotateGrace,
		Now:           a.clock,
		Logger:        a.log,
		Observe:       h.observeWebhook,
	})
	if err != nil {
		return &settingError{env: "RR_STRIPE_WEBHOOK_SECRET", err: err}
	}
	if a.cfg.MeterEvent != "" && a.cfg.StripeAPIKey != "" {
		a.reporter, err = entitlement.NewReporter(ents, entitlement.ReporterConfig{
			EventName: a.cfg.MeterEvent,
			APIKey:    a.cfg.StripeAPIKey,
			Backend:   backend,
			Customers: ents,
			Grace:     a.cfg.MeterGrace,
			Interval:  a.cfg.MeterInterval,
			Now:       a.clock,
			Logger:    a.log,
		})
		if err != nil {
			return &settingError{env: "RR_STRIPE_METER_EVENT", err: err}
		}
	}
	return nil
}

func (a *app) clock() time.Time { return a.now() }

// sealKey derives the AES-256 key that seals webhook-issued keys until their owner
// reveals them from the session secret, so one secret configures both.
func sealKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tollgate/releaseradar entitlement seal key v1"))
	return m.Sum(nil)
}

// Close writes what the gate still holds in memory and closes the database.
func (a *app) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.gate.Close(ctx)
	return errors.Join(err, a.db.Close())
}
