package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	apisql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/sqlstore"
	"github.com/releaseradar/tollgate/entitlement/storetest"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// open returns a bootstrapped store on db.
func open(t testing.TB, db *sqlx.DB) *sqlstore.Store {
	t.Helper()
	s := sqlstore.New(db)
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	return s
}

// openKeys returns a KeyIssuer on an apikey/sqlstore on db.
func openKeys(t testing.TB, db *sqlx.DB) *keystest.Issuer {
	t.Helper()
	keys := apisql.New(db, apisql.Config{})
	if err := keys.Bootstrap(context.Background()); err != nil {
		t.Fatalf("apikey Bootstrap: %v", err)
	}
	return keystest.New(keys)
}

func TestConformanceSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) entitlement.Store { return open(t, testenv.SQLite(t)) })
}

func TestConformancePostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) entitlement.Store { return open(t, testenv.Postgres(t)) })
}

func TestLedgerConformanceSQLite(t *testing.T) {
	t.Parallel()
	storetest.RunLedger(t, func(t *testing.T) entitlement.MeterLedger { return open(t, testenv.SQLite(t)) })
}

func TestLedgerConformancePostgres(t *testing.T) {
	t.Parallel()
	storetest.RunLedger(t, func(t *testing.T) entitlement.MeterLedger { return open(t, testenv.Postgres(t)) })
}

// TestKeysJoinTransaction: a key store on the same database, called with the
// context Update hands fn, writes inside the update's transaction, so an event
// ID, the state it changes and the key it issues commit or roll back together.
func TestKeysJoinTransaction(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		issuer := openKeys(t, db)
		apply := func(eventID, plan string, fail error) (apikey.Key, error) {
			var k apikey.Key
			err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
				if _, err := tx.MarkProcessed(ctx, entitlement.Event{ID: eventID, Type: "x", ReceivedAt: time.Now()}); err != nil {
					return err
				}
				var err error
				if _, k, err = issuer.Issue(ctx, "user_1", plan, 10, "test", 0); err != nil {
					return err
				}
				if err := tx.PutEntitlement(ctx, entitlement.Entitlement{UserID: "user_1", Plan: plan, KeyID: k.ID, UpdatedAt: time.Now()}); err != nil {
					return err
				}
				return fail
			})
			return k, err
		}
		processed := func(eventID string) bool {
			var first bool
			err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
				var err error
				first, err = tx.MarkProcessed(ctx, entitlement.Event{ID: eventID, Type: "x", ReceivedAt: time.Now()})
				return errors.Join(err, errors.New("look only")) // roll the probe back
			})
			if err == nil {
				t.Fatal("the probe committed")
			}
			return !first
		}

		kept, err := apply("evt_1", "gold", nil)
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if _, err := apply("evt_2", "platinum", boom); !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want boom", err)
		}

		keys, err := issuer.Keys().ListByUser(ctx, "user_1")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].ID != kept.ID || !keys[0].Active() {
			t.Fatalf("after a committed and a rolled-back update the user's keys are %+v, want only the first, active", keys)
		}
		if !processed("evt_1") || processed("evt_2") {
			t.Fatalf("processed: evt_1 %v, evt_2 %v; want the committed one only", processed("evt_1"), processed("evt_2"))
		}
		err = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
			e, err := tx.Entitlement(ctx, "user_1")
			if err == nil && (e.Plan != "gold" || e.KeyID != kept.ID) {
				t.Errorf("entitlement after the rolled-back update: %+v, want gold with the first key", e)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestUpdateJoinsOuterTransaction: an Update called with a context that already
// carries a transaction on the database runs inside it, and the outer caller's
// failure rolls it back.
func TestUpdateJoinsOuterTransaction(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		boom := errors.New("boom")
		err := sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
				_, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "u", BoundAt: time.Now()})
				return err
			})
			if err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Atomic = %v, want boom", err)
		}
		err = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
			if _, err := tx.Customer(ctx, "cus_1"); !errors.Is(err, entitlement.ErrNotFound) {
				t.Errorf("the binding outlived the outer transaction: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestBootstrapTwice: Bootstrap is idempotent and keeps the data.
func TestBootstrapTwice(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		err := s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
			_, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "u", BoundAt: time.Now()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		s = open(t, db)
		err = s.Update(ctx, func(ctx context.Context, tx entitlement.Tx) error {
			c, err := tx.Customer(ctx, "cus_1")
			if err == nil && c.UserID != "u" {
				t.Errorf("binding after a second Bootstrap: %+v", c)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestBootstrapOwnTablesOnly: the store creates its own tables and no other
// store's.
func TestBootstrapOwnTablesOnly(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		open(t, db)
		if _, err := db.Exec(`SELECT 1 FROM api_keys`); err == nil {
			t.Fatal("Bootstrap created api_keys, another store's table")
		}
		for _, table := range []string{"entitlement_lock", "entitlement_events", "entitlement_customers", "entitlement_subscriptions",
			"entitlement_features", "entitlement_grants", "entitlement_sealed_keys", "entitlement_usage", "entitlement_usage_reports"} {
			if _, err := db.Exec(`SELECT 1 FROM ` + table); err != nil {
				t.Errorf("table %s: %v", table, err)
			}
		}
	})
}

// TestUpdateWithoutBootstrap: an Update on a database the store was not
// bootstrapped on fails instead of running unserialized.
func TestUpdateWithoutBootstrap(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		s := open(t, db)
		if _, err := db.Exec(`DELETE FROM entitlement_lock`); err != nil {
			t.Fatal(err)
		}
		ran := false
		err := s.Update(context.Background(), func(context.Context, entitlement.Tx) error { ran = true; return nil })
		if err == nil || ran {
			t.Fatalf("Update without the lock row: %v (fn ran: %v), want an error", err, ran)
		}
	})
}

// TestNewTunesPool: New bounds a pool left at database/sql's defaults, and leaves
// one the application bounded alone.
func TestNewTunesPool(t *testing.T) {
	t.Parallel()
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(testenv.SQLitePath(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sqlstore.New(db)
	if n := db.Stats().MaxOpenConnections; n != sqldb.SQLiteConns {
		t.Fatalf("MaxOpenConnections after New = %d, want %d", n, sqldb.SQLiteConns)
	}
	bounded := testenv.SQLite(t) // bounded by testenv
	want := bounded.Stats().MaxOpenConnections
	sqlstore.New(bounded)
	if n := bounded.Stats().MaxOpenConnections; n != want {
		t.Fatalf("New changed an application's pool bound from %d to %d", want, n)
	}
}
