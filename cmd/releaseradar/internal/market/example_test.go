package market_test

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
)

// An earnings beat of 5% against consensus, 30 days (one half-life) old, at a
// company worth $1 trillion.
func ExampleScore() {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	e := market.Event{
		ID: 1, Ticker: "AAPL", Type: market.TypeEarnings,
		Surprise: 5, SurpriseKind: market.SurpriseEPS,
		OccurredAt: now.Add(-30 * 24 * time.Hour),
	}
	imp := market.Score(e, 1e12, now)
	fmt.Printf("score %v = 100 × type %v × surprise %v × recency %v × size %v\n",
		imp.Score, imp.Parts.TypeWeight, imp.Parts.Surprise, imp.Parts.Recency, imp.Parts.Size)
	// Output:
	// score 18.75 = 100 × type 1 × surprise 0.5 × recency 0.5 × size 0.75
}

func ExamplePortfolioImpact() {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	companies := map[string]market.Company{
		"AAPL": {Ticker: "AAPL", MarketCapUSD: 100e9},
		"PLUG": {Ticker: "PLUG", MarketCapUSD: 1e9},
	}
	events := []market.Event{
		{ID: 2, Ticker: "PLUG", Type: market.TypeRegulatory, Surprise: -0.5, SurpriseKind: market.SurpriseSentiment, OccurredAt: now},
		{ID: 1, Ticker: "AAPL", Type: market.TypeGuidance, Surprise: 5, SurpriseKind: market.SurpriseGuidance, OccurredAt: now.Add(-60 * 24 * time.Hour)},
	}
	holdings := []market.Holding{{Ticker: "AAPL", Weight: 0.75}, {Ticker: "PLUG", Weight: 0.25}}
	p := market.PortfolioImpact(holdings, companies, events, now)
	for _, h := range p.Holdings {
		fmt.Printf("%s: impact %v × weight %v = %v\n", h.Ticker, h.Impact, h.Weight, h.Contribution)
	}
	fmt.Printf("total %v over %d days\n", p.Total, p.WindowDays)
	// Output:
	// AAPL: impact 11.25 × weight 0.75 = 8.4375
	// PLUG: impact -52.5 × weight 0.25 = -13.125
	// total -4.6875 over 90 days
}

// A date in "to" includes that whole day; the query then ends before the next one.
func ExampleParseQuery() {
	q, err := market.ParseQuery(url.Values{"ticker": {"brk.b"}, "from": {"2026-03-01"}, "to": {"2026-03-31"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Ticker, q.From.Format(time.DateOnly), "≤ t <", q.Before.Format(time.DateOnly), "limit", q.Limit)

	_, err = market.ParseQuery(url.Values{"limit": {"100000"}})
	fmt.Println(err.(*market.InputError).ProblemDetail())
	// Output:
	// BRK.B 2026-03-01 ≤ t < 2026-04-01 limit 20
	// Invalid parameter "limit": must be an integer from 1 to 100
}

// A raw query string is decoded with ParseValues, which refuses what
// url.ParseQuery would quietly drop, and text that is not UTF-8 without NUL bytes.
func ExampleParseValues() {
	v, err := market.ParseValues("q=obesity+drug&limit=5")
	fmt.Println(v.Get("q"), v.Get("limit"), err)

	for _, raw := range []string{"q=apple%00", "q=%zz"} {
		_, err := market.ParseValues(raw)
		fmt.Println(err.(*market.InputError).ProblemDetail())
	}
	// Output:
	// obesity drug 5 <nil>
	// Invalid parameter "q": must be UTF-8 text without NUL bytes
	// Invalid parameter "q": must be URL-encoded, each % followed by two hex digits, with no ';'
}

// A portfolio body is checked before any ticker is looked up.
func ExampleParseHoldings() {
	hs, err := market.ParseHoldings([]byte(`{"holdings":[{"ticker":"brk.b","weight":0.5}]}`))
	fmt.Println(hs, err)
	_, err = market.ParseHoldings([]byte(`{"holdings":[{"ticker":"AAPL\u0000","weight":0.5}]}`))
	fmt.Println(err.(*market.InputError).ProblemDetail())
	// Output:
	// [{BRK.B 0.5}] <nil>
	// Invalid body field "holdings[0].ticker": must be UTF-8 text without NUL bytes
}

// The handlers report what went wrong to Config.OnError as typed errors; the
// caller maps them to statuses and answers with the sentence they carry.
func ExampleNotFoundError() {
	err := fmt.Errorf("lookup: %w", &market.NotFoundError{What: "Company"})
	var nf *market.NotFoundError
	fmt.Println(errors.Is(err, market.ErrNotFound), errors.As(err, &nf))
	fmt.Println(nf.ProblemDetail())
	// Output:
	// true true
	// Company not found
}
