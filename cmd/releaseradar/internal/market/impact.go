package market

import (
	"math"
	"time"
)

// The impact model's parameters (IMPACT.md explains the choices).
const (
	// HalfLife is the age at which an event's impact has halved.
	HalfLife = 30 * 24 * time.Hour
	// PortfolioWindow is how far back PortfolioImpact looks: events in
	// (now-PortfolioWindow, now].
	PortfolioWindow = 90 * 24 * time.Hour
	// SurpriseSaturationPct is the EPS or guidance surprise, in percent, at which the
	// surprise factor reaches ±1.
	SurpriseSaturationPct = 10.0
	// ReferenceMarketCapUSD is the market cap whose size factor is 1.
	ReferenceMarketCapUSD = 100e9
)

// typeWeights is how much an event type moves a stock, before surprise, age and size.
var typeWeights = map[string]float64{
	TypeEarnings:      1.0,
	TypeGuidance:      0.9,
	TypeMergers:       0.8,
	TypeRegulatory:    0.7,
	TypeProductLaunch: 0.5,
	TypeFiling:        0.2,
}

// TypeWeight returns the weight of an event type: earnings 1.0, guidance 0.9, m_and_a
// 0.8, regulatory 0.7, product_launch 0.5, filing 0.2, and 0 for an unknown type.
func TypeWeight(eventType string) float64 { return typeWeights[eventType] }

// Impact is an event's impact score and the parts it is the product of.
type Impact struct {
	// Score is round(100 × TypeWeight × Surprise × Recency × Size, 4 decimals),
	// computed from the parts as shown, so a client can reproduce it. It is signed:
	// positive for good news, negative for bad, 0 for no surprise.
	Score float64 `json:"score"`
	Parts Parts   `json:"parts"`
}

// Parts are the factors of an impact score, each rounded to 6 decimals.
type Parts struct {
	// TypeWeight is TypeWeight(event type).
	TypeWeight float64 `json:"type_weight"`
	// Surprise is the signed surprise in [-1, 1]: an eps_pct or guidance_pct
	// surprise divided by SurpriseSaturationPct, or the sentiment, clamped.
	Surprise float64 `json:"surprise"`
	// Recency is 2^(-age/HalfLife), 1 for an event not older than now.
	Recency float64 `json:"recency"`
	// Size is 1 - 0.25 × log10(market cap / ReferenceMarketCapUSD), clamped to
	// [0.5, 1.5]: news moves small companies more. 1 when the cap is unknown.
	Size float64 `json:"size"`
	// AgeDays is the event's age at scoring time, in days (4 decimals).
	AgeDays float64 `json:"age_days"`
}

// Score rates event e of a company worth marketCapUSD at instant now. It is a pure
// function: the same arguments always give the same Impact.
func Score(e Event, marketCapUSD int64, now time.Time) Impact {
	age := max(now.Sub(e.OccurredAt), 0)
	p := Parts{
		TypeWeight: round(TypeWeight(e.Type), 6),
		Surprise:   round(surpriseFactor(e), 6),
		Recency:    round(math.Exp2(-float64(age)/float64(HalfLife)), 6),
		Size:       round(sizeFactor(marketCapUSD), 6),
		AgeDays:    round(age.Hours()/24, 4),
	}
	return Impact{Score: round(100*p.TypeWeight*p.Surprise*p.Recency*p.Size, 4), Parts: p}
}

func surpriseFactor(e Event) float64 {
	s := e.Surprise
	if e.SurpriseKind == SurpriseEPS || e.SurpriseKind == SurpriseGuidance {
		s /= SurpriseSaturationPct
	}
	return clamp(s, -1, 1)
}

func sizeFactor(capUSD int64) float64 {
	if capUSD <= 0 {
		return 1
	}
	return clamp(1-0.25*math.Log10(float64(capUSD)/ReferenceMarketCapUSD), 0.5, 1.5)
}

// Holding is one position of a portfolio: a ticker and its weight, the fraction of
// the portfolio it makes up, in (0, 1].
type Holding struct {
	Ticker string  `json:"ticker"`
	Weight float64 `json:"weight"`
}

// ScoredEvent is an event's identity and its impact score, as a portfolio lists it.
type ScoredEvent struct {
	ID         int64     `json:"id"`
	Type       string    `json:"type"`
	Title      string    `json:"title"`
	OccurredAt time.Time `json:"occurred_at"`
	Score      float64   `json:"score"`
}

// HoldingImpact is one holding's share of a portfolio's impact.
type HoldingImpact struct {
	Ticker string  `json:"ticker"`
	Weight float64 `json:"weight"`
	// Impact is the sum of the scores of Events (4 decimals).
	Impact float64 `json:"impact"`
	// Contribution is round(Weight × Impact, 4).
	Contribution float64 `json:"contribution"`
	// Events are the holding's events in the window, newest first.
	Events []ScoredEvent `json:"events"`
}

// PortfolioResult is a portfolio's impact over the PortfolioWindow ending at AsOf.
type PortfolioResult struct {
	AsOf       time.Time `json:"as_of"`
	WindowDays int       `json:"window_days"`
	// Total is round(sum of the holdings' Contribution, 4).
	Total    float64         `json:"total"`
	Holdings []HoldingImpact `json:"holdings"`
}

// PortfolioImpact scores every event of events that belongs to a holding and
// occurred in (now-PortfolioWindow, now], sums the scores per holding, weights each
// sum by the holding's weight, and adds the contributions up. companies supplies
// market caps (a missing company scores with size factor 1). Holdings keep their
// order; events are listed newest first as given. It is a pure function.
func PortfolioImpact(holdings []Holding, companies map[string]Company, events []Event, now time.Time) PortfolioResult {
	res := PortfolioResult{
		AsOf:       now,
		WindowDays: int(PortfolioWindow / (24 * time.Hour)),
		Holdings:   make([]HoldingImpact, len(holdings)),
	}
	since := now.Add(-PortfolioWindow)
	var total float64
	for i, h := range holdings {
		hi := HoldingImpact{Ticker: h.Ticker, Weight: h.Weight, Events: []ScoredEvent{}}
		var sum float64
		for _, e := range events {
			if e.Ticker != h.Ticker || !e.OccurredAt.After(since) || e.OccurredAt.After(now) {
				continue
			}
			sc := Score(e, companies[h.Ticker].MarketCapUSD, now).Score
			sum += sc
			hi.Events = append(hi.Events, ScoredEvent{ID: e.ID, Type: e.Type, Title: e.Title, OccurredAt: e.OccurredAt, Score: sc})
		}
		hi.Impact = round(sum, 4)
		hi.Contribution = round(h.Weight*hi.Impact, 4)
		total += hi.Contribution
		res.Holdings[i] = hi
	}
	res.Total = round(total, 4)
	return res
}

// round rounds x to the given decimal places, half away from zero, and never
// returns -0.
func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	v := math.Round(x*p) / p
	if v == 0 {
		return 0
	}
	return v
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }
