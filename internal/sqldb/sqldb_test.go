package sqldb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

func TestTimeRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 1, 2, 3, 456789999, time.FixedZone("CET", 3600))
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE times (id INTEGER PRIMARY KEY, at TIMESTAMP NULL)`); err != nil {
			t.Fatal(err)
		}
		ins := db.Rebind(`INSERT INTO times (id, at) VALUES (?, ?)`)
		for id, v := range []sqldb.Time{sqldb.T(at), sqldb.T(at.Add(time.Microsecond)), {}} {
			if _, err := db.ExecContext(ctx, ins, id, v); err != nil {
				t.Fatal(err)
			}
		}
		var got []sqldb.Time
		if err := db.SelectContext(ctx, &got, `SELECT at FROM times ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		want := at.UTC().Truncate(time.Microsecond)
		if !got[0].Equal(want) || got[0].Location() != time.UTC {
			t.Errorf("read back %v, want %v in UTC", got[0].Time, want)
		}
		if !got[1].Equal(want.Add(time.Microsecond)) {
			t.Errorf("read back %v, want %v", got[1].Time, want.Add(time.Microsecond))
		}
		if !got[2].IsZero() {
			t.Errorf("NULL read back as %v, want the zero time", got[2].Time)
		}
		// The database orders the encoded instants, so comparisons in SQL agree with Go.
		var n int
		q := db.Rebind(`SELECT COUNT(*) FROM times WHERE at < ?`)
		if err := db.GetContext(ctx, &n, q, sqldb.T(at.Add(time.Microsecond))); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d rows before at+1µs, want 1", n)
		}
	})
}

func TestTimeScanText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"2026-11-27 01:02:03",
		"2026-11-27 01:02:03.000000+00:00",
		"2026-11-27T01:02:03Z",
		"2026-11-27 02:02:03+01:00",
	} {
		var v sqldb.Time
		if err := v.Scan(s); err != nil {
			t.Errorf("Scan(%q): %v", s, err)
			continue
		}
		if want := time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC); !v.Equal(want) {
			t.Errorf("Scan(%q) = %v, want %v", s, v.Time, want)
		}
	}
	var v sqldb.Time
	if err := v.Scan("yesterday"); err == nil {
		t.Error("Scan(yesterday) succeeded")
	}
	if err := v.Scan(42); err == nil {
		t.Error("Scan(42) succeeded")
	}
}

var legacy = sqldb.Table{
	Name:   "widgets",
	Create: `CREATE TABLE IF NOT EXISTS widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 1)`,
	Columns: []sqldb.Column{
		{Name: "name", Def: "TEXT NOT NULL DEFAULT ''"},
		{Name: "size", Def: "INTEGER NOT NULL DEFAULT 1"},
	},
	Indexes: []string{`CREATE UNIQUE INDEX IF NOT EXISTS widgets_name ON widgets (name) WHERE name <> ''`},
}

func TestBootstrapAddsColumnsAndKeepsRows(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE widgets (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO widgets (id) VALUES ('a'), ('b')`); err != nil {
			t.Fatal(err)
		}
		for range 2 { // idempotent
			if err := sqldb.Bootstrap(ctx, db, legacy); err != nil {
				t.Fatal(err)
			}
		}
		var sizes []int
		if err := db.SelectContext(ctx, &sizes, `SELECT size FROM widgets ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 1 {
			t.Fatalf("sizes after bootstrap %v, want [1 1]", sizes)
		}
		// The index exists: a duplicate name is a unique violation, and is reported as one.
		_, err := db.ExecContext(ctx, `UPDATE widgets SET name = 'same'`)
		if !sqldb.IsUniqueViolation(err) {
			t.Fatalf("duplicate name: %v, want a unique violation", err)
		}
	})
}

func TestBootstrapConcurrent(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	errs := make(chan error, 4)
	for range 4 {
		db := testenv.OpenPostgres(t, url)
		go func() { errs <- sqldb.Bootstrap(context.Background(), db, legacy) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent bootstrap: %v", err)
		}
	}
}

// A bootstrap of an up-to-date schema takes no lock that waits for the writers of
// a live database: every admin command and every replica's start runs one while
// other replicas are serving, and CREATE INDEX IF NOT EXISTS alone would queue
// behind (or deadlock with) their open transactions.
func TestBootstrapUpToDateDoesNotWaitForWriters(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	db := testenv.OpenPostgres(t, url)
	ctx := context.Background()
	if err := sqldb.Bootstrap(ctx, db, legacy); err != nil {
		t.Fatal(err)
	}
	writer, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = writer.Rollback() }()
	if _, err := writer.ExecContext(ctx, `INSERT INTO widgets (id, name) VALUES ('w', 'busy')`); err != nil {
		t.Fatal(err)
	}
	other := testenv.OpenPostgres(t, url)
	bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := sqldb.Bootstrap(bctx, other, legacy); err != nil {
		t.Fatalf("bootstrap beside an open write transaction: %v", err)
	}
}

func TestBootstrapRefusesAnIndexWithoutItsName(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	bad := legacy
	bad.Indexes = []string{`CREATE INDEX widgets_size ON widgets (size)`}
	err := sqldb.Bootstrap(context.Background(), db, bad)
	if err == nil || !strings.Contains(err.Error(), "IF NOT EXISTS") {
		t.Fatalf("bootstrap with a bare CREATE INDEX: %v, want it refused", err)
	}
	if cols, err := sqldb.Columns(context.Background(), db, "widgets"); err == nil && len(cols) > 0 {
		t.Fatalf("the refused bootstrap left a widgets table behind: %v", cols)
	}
}

func TestIsUniqueViolationIgnoresOtherErrors(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	_, err := db.Exec(`SELECT * FROM no_such_table`)
	if err == nil || sqldb.IsUniqueViolation(err) {
		t.Fatalf("missing table: %v, reported as a unique violation", err)
	}
	if sqldb.IsUniqueViolation(nil) {
		t.Fatal("nil reported as a unique violation")
	}
}
