package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/sqlstore"
	"github.com/releaseradar/tollgate/entitlement/storetest"
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

func TestConformanceSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) entitlement.Store { return open(t, testenv.SQLite(t)) })
}

func TestConformancePostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) entitlement.Store { return open(t, testenv.Postgres(t)) })
}

// TestKeysRollBack: a SQL store's key writes are part of its transaction, so a
// failed update leaves no key behind and revokes nothing.
func TestKeysRollBack(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		_, kept, _ := apikey.New("user_1", "pro", 10, time.Now())
		if err := s.Keys().Create(ctx, &kept); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		_, fresh, _ := apikey.New("user_1", "team", 100, time.Now())
		err := s.Update(ctx, func(tx entitlement.Tx) error {
			if _, err := tx.Keys().RevokeUser(ctx, "user_1", "test", time.Now()); err != nil {
				return err
			}
			if err := tx.Keys().Create(ctx, &fresh); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want boom", err)
		}
		keys, err := s.Keys().ListByUser(ctx, "user_1")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].ID != kept.ID || !keys[0].Active() {
			t.Fatalf("after a rolled-back update the user's keys are %+v, want only the first, active", keys)
		}
	})
}

// TestBootstrapTwice: Bootstrap is idempotent and keeps the data.
func TestBootstrapTwice(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		s := open(t, db)
		err := s.Update(ctx, func(tx entitlement.Tx) error {
			_, err := tx.BindCustomer(ctx, entitlement.Customer{ID: "cus_1", UserID: "u", BoundAt: time.Now()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		s = open(t, db)
		err = s.Update(ctx, func(tx entitlement.Tx) error {
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
