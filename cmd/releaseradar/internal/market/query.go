package market

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on search input.
const (
	DefaultLimit = 20  // events a search page holds when limit is absent
	MaxLimit     = 100 // largest accepted limit
	MaxQueryLen  = 200 // longest accepted q, in characters
	maxRawQuery  = 4096
)

// Query selects events. The zero value selects every event, DefaultLimit at a time.
type Query struct {
	// Terms are full-text terms that must all occur in the title or the summary
	// (stemmed English words). Empty means no text filter.
	Terms []string
	// Ticker and Type, when set, must match exactly.
	Ticker string
	Type   string
	// From is inclusive and Before exclusive; zero means unbounded.
	From, Before time.Time
	// Limit is the page size, 1 to MaxLimit; 0 means DefaultLimit.
	Limit int
	// After continues a listing after this position (from Page.Next).
	After *Cursor
}

// Cursor is a position in the newest-first order (occurred_at DESC, id DESC).
type Cursor struct {
	OccurredAt time.Time
	ID         int64
}

// String encodes c as an opaque URL-safe token.
func (c Cursor) String() string {
	raw := "v1:" + strconv.FormatInt(c.OccurredAt.UnixMicro(), 10) + ":" + strconv.FormatInt(c.ID, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a token made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	bad := badParam("cursor", "not a cursor returned by this API")
	if len(s) > 64 {
		return Cursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return Cursor{}, bad
	}
	micros, err1 := strconv.ParseInt(parts[1], 10, 64)
	id, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || id <= 0 {
		return Cursor{}, bad
	}
	return Cursor{OccurredAt: time.UnixMicro(micros).UTC(), ID: id}, nil
}

// ParseQuery reads a search from URL parameters: q, ticker, type, from, to, limit and
// cursor. Dates are RFC 3339 or YYYY-MM-DD; from is inclusive, and so is to (a date
// includes that whole UTC day). Any bad value returns an *InputError naming it, and
// so does any parameter, used or not, whose name or value is not UTF-8 text without
// NUL bytes. Use ParseValues on a raw query string: url.ParseQuery drops what it
// cannot decode.
func ParseQuery(v url.Values) (Query, error) {
	if err := checkValues(v); err != nil {
		return Query{}, err
	}
	var q Query
	if s := v.Get("q"); strings.TrimSpace(s) != "" {
		terms, err := parseTerms("q", s)
		if err != nil {
			return Query{}, err
		}
		q.Terms = terms
	}
	if s := v.Get("ticker"); s != "" {
		t, err := parseTicker("ticker", s)
		if err != nil {
			return Query{}, err
		}
		q.Ticker = t
	}
	if s := v.Get("type"); s != "" {
		t := asciiCase(s, 'A', 'a')
		if !slices.Contains(Types(), t) {
			return Query{}, badParam("type", "must be one of "+strings.Join(Types(), ", "))
		}
		q.Type = t
	}
	var err error
	if s := v.Get("from"); s != "" {
		if q.From, _, err = parseInstant("from", s); err != nil {
			return Query{}, err
		}
	}
	if s := v.Get("to"); s != "" {
		t, date, err := parseInstant("to", s)
		if err != nil {
			return Query{}, err
		}
		if date {
			q.Before = t.AddDate(0, 0, 1) // the whole day
		} else {
			q.Before = t.Add(time.Microsecond) // the databases keep microseconds
		}
	}
	if !q.From.IsZero() && !q.Before.IsZero() && !q.From.Before(q.Before) {
		return Query{}, badParam("from", `must not be after "to"`)
	}
	if q.Limit, err = parseLimit(v.Get("limit")); err != nil {
		return Query{}, err
	}
	if s := v.Get("cursor"); s != "" {
		c, err := ParseCursor(s)
		if err != nil {
			return Query{}, err
		}
		q.After = &c
	}
	return q, nil
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit || s[0] == '+' {
		return 0, badParam("limit", "must be an integer from 1 to "+strconv.Itoa(MaxLimit))
	}
	return n, nil
}

// parseInstant reads an RFC 3339 instant or a YYYY-MM-DD date (midnight UTC) and
// reports which it was.
func parseInstant(param, s string) (t time.Time, date bool, err error) {
	inRange := func(t time.Time) bool { return t.Year() >= 1900 && t.Year() <= 2999 }
	if len(s) <= 40 {
		if t, err := time.Parse(time.DateOnly, s); err == nil && inRange(t) {
			return t, true, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil && inRange(t.UTC()) {
			return t.UTC().Truncate(time.Microsecond), false, nil
		}
	}
	return time.Time{}, false, badParam(param, "must be an RFC 3339 time (2026-05-01T14:30:00Z) or a date (2026-05-01) in the years 1900 to 2999")
}

// tickerPattern is a listed symbol: a letter, then letters or digits, with an
// optional share-class suffix (BRK.B, RDS-A).
var tickerPattern = regexp.MustCompile(`^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,2})?$`)

const tickerReason = "must be a ticker symbol such as AAPL or BRK.B"

// normTicker upper-cases s and reports whether it is shaped like a ticker. Only
// ASCII letters are upper-cased: strings.ToUpper would also turn "ı" and "ſ" into
// "I" and "S", accepting "ıbm" as IBM.
func normTicker(s string) (string, bool) {
	if len(s) > 10 {
		return "", false
	}
	t := asciiCase(s, 'a', 'A')
	return t, tickerPattern.MatchString(t)
}

// asciiCase maps the ASCII letters from from+0 to from+25 onto to+0 to to+25 and
// leaves every other byte as it is: asciiCase(s, 'A', 'a') lower-cases ASCII
// only, where strings.ToLower would also turn "İ" into "i".
func asciiCase(s string, from, to byte) string {
	b := []byte(s)
	for i, c := range b {
		if from <= c && c < from+26 {
			b[i] = c - from + to
		}
	}
	return string(b)
}

// parseTerms splits a free-text query into lower-case words of letters and digits;
// everything else separates words, so no input can reach the full-text engine's
// query syntax.
func parseTerms(param, s string) ([]string, error) {
	if err := checkText(param, s); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(s) > MaxQueryLen {
		return nil, badParam(param, "must be at most "+strconv.Itoa(MaxQueryLen)+" characters")
	}
	terms := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	if len(terms) == 0 {
		return nil, badParam(param, "must contain a letter or a digit")
	}
	return slices.Compact(terms), nil
}

// parseEventID reads the path variable param ("id", "event_id"): a positive integer.
func parseEventID(param, s string) (int64, error) {
	if err := checkText(param, s); err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || s[0] == '+' {
		return 0, badParam(param, "must be a positive integer")
	}
	return id, nil
}

// parseTicker reads the ticker of parameter param, upper-cased.
func parseTicker(param, s string) (string, error) {
	if err := checkText(param, s); err != nil {
		return "", err
	}
	t, ok := normTicker(s)
	if !ok {
		return "", badParam(param, tickerReason)
	}
	return t, nil
}

// parseCompanyQuery reads the q of GET /companies, trimmed; "" lists every company.
func parseCompanyQuery(v url.Values) (string, error) {
	if err := checkValues(v); err != nil {
		return "", err
	}
	q := strings.TrimSpace(v.Get("q"))
	if utf8.RuneCountInString(q) > MaxCompanyQueryLen {
		return "", badParam("q", "must be UTF-8 text of at most "+strconv.Itoa(MaxCompanyQueryLen)+" characters")
	}
	return q, nil
}
