package market

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	t.Parallel()
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	cur := Cursor{OccurredAt: time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC), ID: 42}
	tests := []struct {
		raw  string
		want Query
	}{
		{"", Query{Limit: 20}},
		{"limit=1", Query{Limit: 1}},
		{"limit=100", Query{Limit: 100}},
		{"limit=", Query{Limit: 20}},
		{"q=Obesity+drug", Query{Terms: []string{"obesity", "drug"}, Limit: 20}},
		{`q="unbalanced AND (quote*`, Query{Terms: []string{"unbalanced", "and", "quote"}, Limit: 20}},
		{"q=+++", Query{Limit: 20}},
		{"ticker=aapl", Query{Ticker: "AAPL", Limit: 20}},
		{"ticker=BRK.B", Query{Ticker: "BRK.B", Limit: 20}},
		{"type=M_AND_A", Query{Type: "m_and_a", Limit: 20}},
		// A date "to" includes the whole day; an instant "to" includes that instant.
		{"from=2026-03-01&to=2026-03-31", Query{From: day(2026, 3, 1), Before: day(2026, 4, 1), Limit: 20}},
		{"from=2026-03-01&to=2026-03-01", Query{From: day(2026, 3, 1), Before: day(2026, 3, 2), Limit: 20}},
		{"from=2026-03-01T10:00:00Z&to=2026-03-01T10:00:00Z", Query{
			From:   time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
			Before: time.Date(2026, 3, 1, 10, 0, 0, 1000, time.UTC), Limit: 20}},
		{"from=2026-03-01T12:00:00%2B02:00", Query{From: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Limit: 20}},
		{"cursor=" + cur.String(), Query{Limit: 20, After: &cur}},
	}
	for _, tt := range tests {
		v, err := url.ParseQuery(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseQuery(v)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseQuery(%q) =\n %+v, want\n %+v", tt.raw, got, tt.want)
		}
	}
}

func TestParseQueryRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, param string }{
		{"limit=abc", "limit"},
		{"limit=0", "limit"},
		{"limit=-1", "limit"},
		{"limit=101", "limit"},
		{"limit=100000", "limit"},
		{"limit=%2B5", "limit"},
		{"limit=1.5", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"from=notadate", "from"},
		{"from=2026-02-30", "from"},
		{"from=26-01-01", "from"},
		{"from=0001-01-01", "from"},
		{"to=2026-13-01", "to"},
		{"to=2026-05-01T25:00:00Z", "to"},
		{"to=9999-12-31", "to"},
		{"from=2026-05-02&to=2026-05-01", "from"},
		{"from=2026-05-01T10:00:00Z&to=2026-05-01T09:59:59Z", "from"},
		{"ticker=%3Cscript%3E", "ticker"},
		{"ticker=TOOLONGTICKER", "ticker"},
		{"ticker=1ABC", "ticker"},
		{"ticker=A%27--", "ticker"},
		{"type=ipo", "type"},
		{"q=" + strings.Repeat("a", MaxQueryLen+1), "q"},
		{"q=%21%21%21", "q"},
		{"q=%FF%FE", "q"},
		{"cursor=garbage!", "cursor"},
		{"cursor=" + "djE6eDox", "cursor"}, // "v1:x:1"
		{"cursor=" + strings.Repeat("A", 100), "cursor"},
	}
	for _, tt := range tests {
		v, err := url.ParseQuery(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseQuery(v)
		var in *InputError
		if !errors.As(err, &in) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseQuery(%q) = %v, want an *InputError", tt.raw, err)
			continue
		}
		if in.Param != tt.param || !strings.Contains(in.ProblemDetail(), `"`+tt.param+`"`) {
			t.Errorf("ParseQuery(%q): detail %q, want it to name %q", tt.raw, in.ProblemDetail(), tt.param)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Cursor{
		{OccurredAt: time.Date(2026, 11, 26, 21, 5, 0, 123456000, time.UTC), ID: 1},
		{OccurredAt: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), ID: 1 << 62},
	} {
		got, err := ParseCursor(c.String())
		if err != nil || !got.OccurredAt.Equal(c.OccurredAt) || got.ID != c.ID {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
		}
	}
}
