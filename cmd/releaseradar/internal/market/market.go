// Package market is the ReleaseRadar domain: listed companies, their market events,
// full-text event search, and the impact model, served by plain net/http handlers.
//
// The bundled data set (data/*.json, written by ./gen) is synthetic: the companies
// are real listed names with rounded, illustrative market caps, but every event is
// invented. Events carry public fields (Event) and internal ones (ingest id, raw
// source URL, analyst notes, internal confidence). The internal fields are loaded
// into the database and never leave it: no query in this package selects them and no
// response type has a field for them, on the public feed or on any gated route.
//
// Storage is SQL through *sqlx.DB (SQLite through modernc.org/sqlite, or PostgreSQL);
// this package imports no driver. Search runs in the database on indexes: FTS5 on
// SQLite, a GIN-indexed tsvector expression on PostgreSQL, B-tree indexes for ticker,
// type and time, and keyset pagination on (occurred_at, id).
package market

//go:generate go run ./gen -out data

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Event types.
const (
	TypeEarnings      = "earnings"
	TypeGuidance      = "guidance"
	TypeProductLaunch = "product_launch"
	TypeRegulatory    = "regulatory"
	TypeMergers       = "m_and_a"
	TypeFiling        = "filing"
)

// Surprise kinds: what an event's Surprise measures.
const (
	// SurpriseEPS is reported EPS against the analyst consensus, in percent.
	SurpriseEPS = "eps_pct"
	// SurpriseGuidance is the guidance midpoint against the consensus, in percent.
	SurpriseGuidance = "guidance_pct"
	// SurpriseSentiment is the tone of the news from -1 (bad) to 1 (good).
	SurpriseSentiment = "sentiment"
)

// Types lists the event types in a fixed order.
func Types() []string {
	return []string{TypeEarnings, TypeGuidance, TypeProductLaunch, TypeRegulatory, TypeMergers, TypeFiling}
}

// Company is a listed company.
type Company struct {
	Ticker       string `json:"ticker" db:"ticker"`
	Name         string `json:"name" db:"name"`
	Sector       string `json:"sector" db:"sector"`
	MarketCapUSD int64  `json:"market_cap_usd" db:"market_cap_usd"`
}

// Event is a market event's public fields, the only form in which an event leaves
// the database.
type Event struct {
	ID         int64     `json:"id"`
	Ticker     string    `json:"ticker"`
	Type       string    `json:"type"`
	Title      string    `json:"title"`
	Summary    string    `json:"summary"`
	OccurredAt time.Time `json:"occurred_at"`
	// Surprise is signed; SurpriseKind says what it measures (SurpriseEPS,
	// SurpriseGuidance or SurpriseSentiment).
	Surprise     float64 `json:"surprise"`
	SurpriseKind string  `json:"surprise_kind"`
	// Source names where the event came from, such as "SEC EDGAR".
	Source string `json:"source"`
}

// record is an event as the data set holds it, internal fields included. It is used
// only to load the database.
type record struct {
	Event
	IngestID           string  `json:"ingest_id"`
	RawSourceURL       string  `json:"raw_source_url"`
	AnalystNotes       string  `json:"analyst_notes"`
	InternalConfidence float64 `json:"internal_confidence"`
}

// ErrNotFound is returned when an event or a company does not exist (HTTP 404).
var ErrNotFound = problem.New(problem.NotFound, "market: not found")

// NotFoundError is ErrNotFound as the handlers report it: it names what was missing.
type NotFoundError struct {
	What string // "Event" or "Company"
}

func (e *NotFoundError) Error() string { return "market: " + strings.ToLower(e.What) + " not found" }

// ProblemDetail returns the client-facing sentence, such as "Event not found".
func (e *NotFoundError) ProblemDetail() string { return e.What + " not found" }

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// ErrInvalid is matched (errors.Is) by every *InputError (HTTP 400).
var ErrInvalid = problem.New(problem.Invalid, "market: invalid input")

// InputError is a bad request value. Detail is the sentence answered to the client
// and names the parameter.
type InputError struct {
	Param  string // "limit", "from", "holdings[2].weight", …
	Reason string // "must be an integer from 1 to 100"
	where  string // "" (a URL parameter), "body field", or "request" (Param names the part)
}

func (e *InputError) Error() string { return "market: " + e.ProblemDetail() }

// ProblemDetail returns the client-facing sentence, such as
// `Invalid parameter "limit": must be an integer from 1 to 100` or
// `Invalid request body: is not valid JSON (at byte 2)`.
func (e *InputError) ProblemDetail() string {
	switch e.where {
	case "":
		return fmt.Sprintf("Invalid parameter %q: %s", e.Param, e.Reason)
	case "request":
		return fmt.Sprintf("Invalid %s: %s", e.Param, e.Reason)
	}
	return fmt.Sprintf("Invalid %s %q: %s", e.where, e.Param, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InputError) Unwrap() error { return ErrInvalid }

func badParam(param, reason string) error { return &InputError{Param: param, Reason: reason} }

//go:embed data/companies.json data/events.json
var dataFS embed.FS

// dataSet is the embedded data set, parsed.
type dataSet struct {
	companies []Company
	events    []record
}

// dataset parses the embedded data set once.
var dataset = sync.OnceValues(func() (*dataSet, error) {
	ds := new(dataSet)
	if err := readJSON("data/companies.json", &ds.companies); err != nil {
		return nil, err
	}
	if err := readJSON("data/events.json", &ds.events); err != nil {
		return nil, err
	}
	return ds, nil
})

func readJSON(name string, v any) error {
	b, err := dataFS.ReadFile(name)
	if err != nil {
		return fmt.Errorf("market: data set: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("market: data set %s: %w", name, err)
	}
	return nil
}
