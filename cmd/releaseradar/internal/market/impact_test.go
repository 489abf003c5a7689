package market

import (
	"reflect"
	"testing"
	"time"
)

func TestScore(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ev := func(typ string, surprise float64, kind string, age time.Duration) Event {
		return Event{ID: 1, Ticker: "X", Type: typ, Surprise: surprise, SurpriseKind: kind, OccurredAt: now.Add(-age)}
	}
	tests := []struct {
		name string
		e    Event
		cap  int64
		want Impact
	}{
		{"earnings beat, one half-life old, 1T cap", ev(TypeEarnings, 5, SurpriseEPS, 30*day), 1e12,
			Impact{Score: 18.75, Parts: Parts{TypeWeight: 1, Surprise: 0.5, Recency: 0.5, Size: 0.75, AgeDays: 30}}},
		{"guidance cut beyond saturation, fresh, reference cap", ev(TypeGuidance, -20, SurpriseGuidance, 0), 100e9,
			Impact{Score: -90, Parts: Parts{TypeWeight: 0.9, Surprise: -1, Recency: 1, Size: 1, AgeDays: 0}}},
		{"filing, two half-lives, 1B cap", ev(TypeFiling, 0.25, SurpriseSentiment, 60*day), 1e9,
			Impact{Score: 1.875, Parts: Parts{TypeWeight: 0.2, Surprise: 0.25, Recency: 0.25, Size: 1.5, AgeDays: 60}}},
		{"launch, half a half-life, 3.6T cap", ev(TypeProductLaunch, 0.8, SurpriseSentiment, 15*day), 3.6e12,
			Impact{Score: 17.2795, Parts: Parts{TypeWeight: 0.5, Surprise: 0.8, Recency: 0.707107, Size: 0.610924, AgeDays: 15}}},
		{"guidance, 45 days, 2.2B cap", ev(TypeGuidance, 3.4, SurpriseGuidance, 45*day), 2.2e9,
			Impact{Score: 15.3019, Parts: Parts{TypeWeight: 0.9, Surprise: 0.34, Recency: 0.353553, Size: 1.414394, AgeDays: 45}}},
		{"sentiment clamped, future event counts as new, unknown cap", ev(TypeRegulatory, 1.7, SurpriseSentiment, -2*day), 0,
			Impact{Score: 70, Parts: Parts{TypeWeight: 0.7, Surprise: 1, Recency: 1, Size: 1, AgeDays: 0}}},
		{"miss, three half-lives, size floor", ev(TypeEarnings, -3, SurpriseEPS, 90*day), 1e15,
			Impact{Score: -1.875, Parts: Parts{TypeWeight: 1, Surprise: -0.3, Recency: 0.125, Size: 0.5, AgeDays: 90}}},
		{"deal, 12 hours old", ev(TypeMergers, -0.5, SurpriseSentiment, 12*time.Hour), 100e9,
			Impact{Score: -39.5406, Parts: Parts{TypeWeight: 0.8, Surprise: -0.5, Recency: 0.988514, Size: 1, AgeDays: 0.5}}},
		{"no surprise, no impact", ev(TypeEarnings, 0, SurpriseEPS, day), 100e9,
			Impact{Score: 0, Parts: Parts{TypeWeight: 1, Surprise: 0, Recency: 0.977160, Size: 1, AgeDays: 1}}},
		{"unknown type weighs nothing", ev("ipo", 1, SurpriseSentiment, 0), 100e9,
			Impact{Score: 0, Parts: Parts{TypeWeight: 0, Surprise: 1, Recency: 1, Size: 1, AgeDays: 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Score(tt.e, tt.cap, now)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Score = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPortfolioImpact(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	at := func(age time.Duration) time.Time { return now.Add(-age) }
	companies := map[string]Company{
		"AAA": {Ticker: "AAA", MarketCapUSD: 100e9}, // size 1
		"BBB": {Ticker: "BBB", MarketCapUSD: 1e12},  // size 0.75
		"CCC": {Ticker: "CCC", MarketCapUSD: 5e9},
	}
	events := []Event{
		{ID: 9, Ticker: "AAA", Type: TypeEarnings, Surprise: 40, SurpriseKind: SurpriseEPS, OccurredAt: now.Add(time.Hour)}, // after now: out
		{ID: 8, Ticker: "AAA", Type: TypeEarnings, Surprise: 10, SurpriseKind: SurpriseEPS, OccurredAt: at(0)},              // 100
		{ID: 7, Ticker: "ZZZ", Type: TypeEarnings, Surprise: 10, SurpriseKind: SurpriseEPS, OccurredAt: at(day)},            // not held
		{ID: 6, Ticker: "AAA", Type: TypeFiling, Surprise: -0.5, SurpriseKind: SurpriseSentiment, OccurredAt: at(30 * day)}, // -5
		{ID: 5, Ticker: "BBB", Type: TypeMergers, Surprise: 0.5, SurpriseKind: SurpriseSentiment, OccurredAt: at(60 * day)}, // 7.5
		{ID: 4, Ticker: "AAA", Type: TypeEarnings, Surprise: 10, SurpriseKind: SurpriseEPS, OccurredAt: at(90 * day)},       // window edge: out
	}
	holdings := []Holding{{Ticker: "AAA", Weight: 0.5}, {Ticker: "BBB", Weight: 0.4}, {Ticker: "CCC", Weight: 0.1}}
	got := PortfolioImpact(holdings, companies, events, now)
	want := PortfolioResult{
		AsOf: now, WindowDays: 90, Total: 50.5,
		Holdings: []HoldingImpact{
			{Ticker: "AAA", Weight: 0.5, Impact: 95, Contribution: 47.5, Events: []ScoredEvent{
				{ID: 8, Type: TypeEarnings, OccurredAt: at(0), Score: 100},
				{ID: 6, Type: TypeFiling, OccurredAt: at(30 * day), Score: -5},
			}},
			{Ticker: "BBB", Weight: 0.4, Impact: 7.5, Contribution: 3, Events: []ScoredEvent{
				{ID: 5, Type: TypeMergers, OccurredAt: at(60 * day), Score: 7.5},
			}},
			{Ticker: "CCC", Weight: 0.1, Impact: 0, Contribution: 0, Events: []ScoredEvent{}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PortfolioImpact =\n %+v\nwant\n %+v", got, want)
	}
}
