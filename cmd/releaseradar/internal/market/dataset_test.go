package market

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// dataEnd is the exclusive end of the bundled data set; it spans the year before.
var dataEnd = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func mustDataset(t testing.TB) *dataSet {
	t.Helper()
	ds, err := dataset()
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// wantIDs returns the ids of the data set's events that keep selects, in the
// API's order: occurred_at DESC, id DESC.
func wantIDs(t testing.TB, keep func(record) bool) []int64 {
	t.Helper()
	var rs []record
	for _, r := range mustDataset(t).events {
		if keep(r) {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b record) int {
		if c := b.OccurredAt.Compare(a.OccurredAt); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	ids := make([]int64, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

// load bootstraps db and loads the data set, failing the test otherwise.
func load(t testing.TB, db *sqlx.DB) {
	t.Helper()
	ctx := context.Background()
	if err := Bootstrap(ctx, db); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadIfEmpty(ctx, db)
	if err != nil || !loaded {
		t.Fatalf("LoadIfEmpty = %v, %v; want true, nil", loaded, err)
	}
}

func TestDatasetShape(t *testing.T) {
	t.Parallel()
	ds := mustDataset(t)
	if n := len(ds.companies); n < 35 || n > 45 {
		t.Errorf("%d companies, want about 40", n)
	}
	caps := map[string]int64{}
	for _, c := range ds.companies {
		if _, ok := normTicker(c.Ticker); !ok || c.Name == "" || c.Sector == "" || c.MarketCapUSD <= 0 {
			t.Errorf("bad company %+v", c)
		}
		if _, dup := caps[c.Ticker]; dup {
			t.Errorf("ticker %s listed twice", c.Ticker)
		}
		caps[c.Ticker] = c.MarketCapUSD
	}
	if len(ds.events) < 500 {
		t.Fatalf("%d events, want at least 500", len(ds.events))
	}
	start := dataEnd.AddDate(-1, 0, 0)
	types := map[string]int{}
	titles := map[string]bool{}
	for i, e := range ds.events {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d; ids must be 1..n in file order", i, e.ID)
		}
		if _, ok := caps[e.Ticker]; !ok {
			t.Errorf("event %d: unknown ticker %q", e.ID, e.Ticker)
		}
		if e.OccurredAt.Before(start) || !e.OccurredAt.Before(dataEnd) || e.OccurredAt.Location() != time.UTC {
			t.Errorf("event %d at %v, outside [%v, %v) UTC", e.ID, e.OccurredAt, start, dataEnd)
		}
		if i > 0 && e.OccurredAt.Before(ds.events[i-1].OccurredAt) {
			t.Errorf("event %d is older than event %d; the file is in time order", e.ID, e.ID-1)
		}
		types[e.Type]++
		titles[e.Title] = true
		if e.Title == "" || len(e.Summary) < 60 || e.Source == "" {
			t.Errorf("event %d lacks a title, summary or source: %+v", e.ID, e.Event)
		}
		wantKind := SurpriseSentiment
		switch e.Type {
		case TypeEarnings:
			wantKind = SurpriseEPS
		case TypeGuidance:
			wantKind = SurpriseGuidance
		}
		if e.SurpriseKind != wantKind {
			t.Errorf("event %d (%s) has surprise kind %q, want %q", e.ID, e.Type, e.SurpriseKind, wantKind)
		}
		if wantKind == SurpriseSentiment && (e.Surprise < -1 || e.Surprise > 1) {
			t.Errorf("event %d: sentiment %v outside [-1, 1]", e.ID, e.Surprise)
		}
		if !strings.HasPrefix(e.IngestID, "ing_") || !strings.Contains(e.RawSourceURL, e.IngestID) ||
			e.AnalystNotes == "" || e.InternalConfidence <= 0 || e.InternalConfidence > 1 {
			t.Errorf("event %d: incomplete internal fields", e.ID)
		}
	}
	for _, typ := range Types() {
		if types[typ] < 15 {
			t.Errorf("%d %s events, want at least 15", types[typ], typ)
		}
	}
	if len(types) != len(Types()) {
		t.Errorf("event types %v, want exactly %v", types, Types())
	}
	if len(titles) < len(ds.events)*3/4 {
		t.Errorf("only %d distinct titles for %d events", len(titles), len(ds.events))
	}
}

// TestDatasetRegenerates checks that ./gen is deterministic and that the committed
// files are its output.
func TestDatasetRegenerates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs ./gen")
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "./gen", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, out)
	}
	for _, name := range []string{"companies.json", "events.json"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := dataFS.ReadFile("data/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("data/%s differs from what ./gen writes; run go generate", name)
		}
	}
}
