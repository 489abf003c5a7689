package sqldb_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

func count(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	var n int
	if err := db.Get(&n, `SELECT COUNT(*) FROM things`); err != nil {
		t.Fatal(err)
	}
	return n
}

// Atomic commits what fn wrote through Q and Write with its context, rolls it back
// on error, and a nested Atomic joins the outer transaction.
func TestAtomic(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		if _, err := db.Exec(`CREATE TABLE things (id INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		insert := db.Rebind(`INSERT INTO things (id) VALUES (?)`)
		add := func(ctx context.Context, id int) error {
			return sqldb.Write(ctx, db, func(q sqldb.Querier) error {
				_, err := q.ExecContext(ctx, insert, id)
				return err
			})
		}
		err := sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			if _, ok := sqldb.InTx(ctx, db); !ok {
				t.Error("fn's context carries no transaction")
			}
			if err := add(ctx, 1); err != nil {
				return err
			}
			return sqldb.Atomic(ctx, db, func(ctx context.Context) error { return add(ctx, 2) })
		})
		if err != nil || count(t, db) != 2 {
			t.Fatalf("commit: %v, %d rows", err, count(t, db))
		}
		boom := errors.New("boom")
		err = sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			if err := add(ctx, 3); err != nil {
				return err
			}
			if err := sqldb.Atomic(ctx, db, func(ctx context.Context) error { return add(ctx, 4) }); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) || count(t, db) != 2 {
			t.Fatalf("rollback: %v, %d rows, want boom and 2", err, count(t, db))
		}
		// A transaction of another database is not joined.
		other := testenv.SQLite(t)
		err = sqldb.Atomic(ctx, other, func(octx context.Context) error {
			if _, ok := sqldb.InTx(octx, db); ok {
				t.Error("a transaction on another database was taken for db's")
			}
			return add(octx, 5)
		})
		if err != nil || count(t, db) != 3 {
			t.Fatalf("a write outside db's transaction: %v, %d rows", err, count(t, db))
		}
	})
}

// On SQLite the process's writers take turns in Go, so that none waits in
// SQLite's busy handler, while readers go on beside a writer.
func TestSQLiteWritersTakeTurns(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	sqldb.Tune(db)
	if _, err := db.Exec(`CREATE TABLE things (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sqldb.Atomic(context.Background(), db, func(ctx context.Context) error {
				n := inside.Add(1)
				defer inside.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				_, err := sqldb.Q(ctx, db).ExecContext(ctx, `INSERT INTO things (id) VALUES (?)`, i)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	// A reader is not held up by the writer holding the lock.
	read := make(chan error, 1)
	go func() {
		time.Sleep(10 * time.Millisecond) // while the writers queue
		var n int
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		read <- sqldb.Q(rctx, db).GetContext(rctx, &n, `SELECT COUNT(*) FROM things`)
	}()
	wg.Wait()
	if err := <-read; err != nil {
		t.Errorf("a read during a write transaction: %v", err)
	}
	if most.Load() != 1 || count(t, db) != 8 {
		t.Fatalf("%d writers at once, %d rows; want 1 and 8", most.Load(), count(t, db))
	}
}

func TestTune(t *testing.T) {
	t.Parallel()
	lite := testenv.SQLite(t)
	sqldb.Tune(lite)
	if n := lite.Stats().MaxOpenConnections; n != sqldb.SQLiteConns {
		t.Errorf("SQLite pool %d, want %d", n, sqldb.SQLiteConns)
	}
	own := testenv.SQLite(t) // testenv sets its own size
	before := own.Stats().MaxOpenConnections
	sqldb.Tune(own)
	if own.Stats().MaxOpenConnections != before {
		t.Error("Tune changed a pool the application had sized")
	}
	pg, err := sqlx.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	sqldb.Tune(pg)
	if n := pg.Stats().MaxOpenConnections; n != sqldb.PostgresConns {
		t.Errorf("PostgreSQL pool %d, want %d", n, sqldb.PostgresConns)
	}
}

// AfterCommit runs after the outermost transaction commits, never after a rollback,
// and at once outside a transaction.
func TestAfterCommit(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	ctx := context.Background()
	var ran []string
	note := func(s string) func() { return func() { ran = append(ran, s) } }
	sqldb.AfterCommit(ctx, db, note("outside"))
	err := sqldb.Atomic(ctx, db, func(ctx context.Context) error {
		sqldb.AfterCommit(ctx, db, note("outer"))
		_ = sqldb.Atomic(ctx, db, func(ctx context.Context) error {
			sqldb.AfterCommit(ctx, db, note("nested"))
			return nil
		})
		if len(ran) != 1 {
			t.Errorf("ran %v before the commit", ran)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sqldb.Atomic(ctx, db, func(ctx context.Context) error {
		sqldb.AfterCommit(ctx, db, note("rolled back"))
		return errors.New("roll back")
	})
	if got := strings.Join(ran, ","); got != "outside,outer,nested" {
		t.Errorf("ran %s", got)
	}
}
