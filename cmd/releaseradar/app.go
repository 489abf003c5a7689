package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/entitlement"
	entsql "github.com/releaseradar/tollgate/entitlement/sqlstore"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
)

// app is what both the server and the admin commands need: the database with its
// schema in place, the stores, the dashboard token signer and the entitlement
// service.
type app struct {
	cfg     config
	log     *slog.Logger
	db      *sqlx.DB
	catalog entitlement.Catalog
	keys    *aksql.Store
	quotas  *qsql.Store
	ent     *entitlement.Service
	signer  *session.Signer
	now     func() time.Time
	// observeWebhook counts webhook events; the server sets it before serving.
	observeWebhook func(eventType, outcome string)
}

// cycle is the quota cycle every key runs on.
const cycle = quota.DefaultCycle

// openApp opens the database, bootstraps every store's schema, loads the data set
// into an empty database and builds the services. Its errors name the setting
// they concern.
func openApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	db, err := openDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, &settingError{env: "RR_DATABASE_URL", err: err}
	}
	a := &app{
		cfg:     cfg,
		log:     log,
		db:      db,
		catalog: entitlement.DefaultCatalog(),
		keys:    aksql.New(db),
		quotas:  qsql.New(db, qsql.Config{Cycle: cycle}),
		now:     time.Now,
	}
	if err := a.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) init(ctx context.Context) error {
	dbErr := func(what string, err error) error {
		return &settingError{env: "RR_DATABASE_URL", err: fmt.Errorf("%s: %w", what, err)}
	}
	ents := entsql.New(a.db)
	steps := []struct {
		what string
		run  func(context.Context) error
	}{
		{"api key schema", a.keys.Bootstrap},
		{"quota schema", a.quotas.Bootstrap},
		{"entitlement schema", ents.Bootstrap},
		{"settings schema", func(ctx context.Context) error { return sqldb.Bootstrap(ctx, a.db, settingsTable) }},
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
		var err error
		if secret, err = storedSecret(ctx, a.db, sessionSecretSetting); err != nil {
			return &settingError{env: "RR_SESSION_SECRET", err: err}
		}
	}
	signer, err := session.New(secret, session.Config{Now: a.clock})
	if err != nil {
		return &settingError{env: "RR_SESSION_SECRET", err: err}
	}
	a.signer = signer

	var subs entitlement.SubscriptionReader
	if a.cfg.StripeAPIKey != "" {
		subs = entitlement.StripeReader(a.cfg.StripeAPIKey, nil)
	}
	ent, err := entitlement.New(ents, entitlement.Config{
		Catalog:       a.catalog,
		Prices:        a.cfg.Prices,
		WebhookSecret: a.cfg.WebhookSecret,
		Livemode:      a.cfg.Livemode,
		SealKey:       sealKey(secret),
		Subscriptions: subs,
		Now:           a.clock,
		Logger:        a.log,
		Observe: func(eventType, outcome string) {
			if a.observeWebhook != nil {
				a.observeWebhook(eventType, outcome)
			}
		},
	})
	if err != nil {
		return &settingError{env: "RR_STRIPE_WEBHOOK_SECRET", err: err}
	}
	a.ent = ent
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

// Close closes the database.
func (a *app) Close() error { return a.db.Close() }
