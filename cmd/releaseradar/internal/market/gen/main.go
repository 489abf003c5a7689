// Command gen writes the market package's bundled sample data set: synthetic events
// for about forty listed companies over the twelve months before the data set's
// end date, from a fixed seed so that every run writes the same bytes.
//
// Usage (from the market package directory, see its go:generate line):
//
//	go run ./gen -out data
//
// The companies are real listed names with rounded, illustrative market caps; every
// event, figure, target company and quote is invented and must not be read as news.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// end is the exclusive end of the data set; it starts twelve months earlier.
var end = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

type company struct {
	Ticker       string `json:"ticker"`
	Name         string `json:"name"`
	Sector       string `json:"sector"`
	MarketCapUSD int64  `json:"market_cap_usd"`

	short     string  // name used in headlines
	industry  string  // key of drivers, products and regulators
	eps       float64 // consensus EPS of the first quarter in the set
	revenueBn float64 // quarterly revenue, billions of USD
	growth    float64 // year-over-year revenue growth, percent
}

// event mirrors the market package's data file format, internal fields included.
type event struct {
	ID                 int64   `json:"id"`
	Ticker             string  `json:"ticker"`
	Type               string  `json:"type"`
	Title              string  `json:"title"`
	Summary            string  `json:"summary"`
	OccurredAt         string  `json:"occurred_at"`
	Surprise           float64 `json:"surprise"`
	SurpriseKind       string  `json:"surprise_kind"`
	Source             string  `json:"source"`
	IngestID           string  `json:"ingest_id"`
	RawSourceURL       string  `json:"raw_source_url"`
	AnalystNotes       string  `json:"analyst_notes"`
	InternalConfidence float64 `json:"internal_confidence"`

	at time.Time
}

func main() {
	out := flag.String("out", "data", "directory to write companies.json and events.json into")
	flag.Parse()
	companies, events := generate()
	if len(events) < 500 {
		fmt.Fprintf(os.Stderr, "gen: only %d events generated, want at least 500\n", len(events))
		os.Exit(1)
	}
	if err := write(filepath.Join(*out, "companies.json"), companies); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := write(filepath.Join(*out, "events.json"), events); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write stores items as a JSON array with one compact object a line, so that a
// regenerated file diffs line by line.
func write[T any](path string, items []T) error {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, it := range items {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(it); err != nil {
			return err
		}
		b.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if i < len(items)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func generate() ([]company, []event) {
	r := rand.New(rand.NewPCG(20261127, 5))
	cs := companyList()
	for i := range cs {
		c := &cs[i]
		c.eps = round(0.4+r.Float64()*5.6, 2)
		if c.MarketCapUSD < 20e9 && r.IntN(2) == 0 {
			c.eps = -round(0.1+r.Float64()*0.6, 2) // small caps that still lose money
		}
		c.revenueBn = round(float64(c.MarketCapUSD)/1e9/(priceToSales[c.Sector]*(0.7+r.Float64()*0.7))/4, 2)
		c.growth = round(-4+r.Float64()*22, 1)
	}
	g := &gen{r: r}
	for i := range cs {
		g.company(&cs[i])
	}
	evs := g.events
	slices.SortStableFunc(evs, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		if c := strings.Compare(a.Ticker, b.Ticker); c != 0 {
			return c
		}
		return strings.Compare(a.Title, b.Title)
	})
	for i := range evs {
		evs[i].ID = int64(i + 1)
		evs[i].OccurredAt = evs[i].at.Format(time.RFC3339)
	}
	return cs, evs
}

type gen struct {
	r      *rand.Rand
	events []event
}

func (g *gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *gen) between(lo, hi float64) float64 { return lo + g.r.Float64()*(hi-lo) }

// tradingDay moves t forward to a weekday.
func tradingDay(t time.Time) time.Time {
	for t.Weekday() == time.Saturday || t.Weekday() == time.Sunday {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// randomMoment returns a weekday instant in [start, end) during US trading hours.
func (g *gen) randomMoment(start, stop time.Time) time.Time {
	days := int(stop.Sub(start).Hours() / 24)
	for {
		d := tradingDay(start.AddDate(0, 0, g.r.IntN(days)))
		t := d.Add(time.Duration(12*60+g.r.IntN(9*60)) * time.Minute)
		if t.Before(stop) {
			return t
		}
	}
}

func (g *gen) add(c *company, typ string, at time.Time, title, summary string, surprise float64, kind, source, notes string) {
	id := fmt.Sprintf("ing_%012x", g.r.Uint64()>>16)
	g.events = append(g.events, event{
		Ticker:             c.Ticker,
		Type:               typ,
		Title:              title,
		Summary:            summary,
		Surprise:           surprise,
		SurpriseKind:       kind,
		Source:             source,
		IngestID:           id,
		RawSourceURL:       fmt.Sprintf("https://ingest.releaseradar.internal/raw/%s/%s.json", at.Format("2006/01"), id),
		AnalystNotes:       notes,
		InternalConfidence: round(g.between(0.55, 0.99), 2),
		at:                 at,
	})
}

// company adds one company's year: four quarterly reports, each with its periodic
// filing and often a guidance update, plus launches, regulatory news, deals and
// other filings at random times.
func (g *gen) company(c *company) {
	start := end.AddDate(-1, 0, 0)
	offset := g.r.IntN(38)
	quarterLabels := []string{"Q4 2025", "Q1 2026", "Q2 2026", "Q3 2026"}
	eps := c.eps
	for q, month := range []time.Month{time.January, time.April, time.July, time.October} {
		day := tradingDay(time.Date(2026, month, 14, 0, 0, 0, 0, time.UTC).AddDate(0, 0, offset))
		at := day.Add(21*time.Hour + 5*time.Minute) // 16:05 New York, after the close
		if g.r.IntN(3) == 0 {
			at = day.Add(11*time.Hour + 30*time.Minute) // 06:30 New York, before the open
		}
		g.earnings(c, at, quarterLabels[q], eps)
		form, what, period := "10-Q", "quarterly report", quarterLabels[q]
		if q == 0 {
			form, what, period = "10-K", "annual report", "fiscal 2025"
		}
		g.add(c, "filing", at.Add(time.Duration(10+g.r.IntN(80))*time.Minute),
			fmt.Sprintf("%s files %s %s for %s", c.short, form, what, period),
			fmt.Sprintf("%s filed its Form %s with the SEC, covering %s. %s", c.Name, form, period, g.pick(filingDetails)),
			round(g.between(-0.15, 0.15), 2), "sentiment", "SEC EDGAR",
			g.pick([]string{"Routine periodic filing; no new risk factors flagged.", "Risk-factor section expanded; diffed against prior filing.", "Segment disclosure changed; update the model mapping.", "No restatements; footnotes consistent with the release."}))
		if g.r.IntN(5) < 3 {
			// Guidance lands with the results, at the same instant: ties on occurred_at.
			g.guidance(c, at, quarterLabels[q])
		}
		eps = round(eps*(1+g.between(-0.03, 0.08)), 2)
	}
	for range 1 + g.r.IntN(3) {
		g.launch(c, g.randomMoment(start, end))
	}
	for range g.r.IntN(3) {
		g.regulatory(c, g.randomMoment(start, end))
	}
	if g.r.IntN(3) < 2 {
		g.deal(c, g.randomMoment(start, end))
	}
	for range g.r.IntN(3) {
		g.otherFiling(c, g.randomMoment(start, end))
	}
}

func (g *gen) earnings(c *company, at time.Time, quarter string, consensus float64) {
	pct := clamp(round(g.r.NormFloat64()*7+2.5, 1), -35, 35)
	actual := round(consensus+math.Abs(consensus)*pct/100, 2)
	if actual == consensus && pct != 0 {
		actual += 0.01 * sign(pct)
	}
	pct = round((actual-consensus)/math.Abs(consensus)*100, 1)
	revenue := round(c.revenueBn*g.between(0.95, 1.08), 2)
	growth := round(c.growth+g.between(-5, 5), 1)
	verdict := "in line with"
	switch {
	case pct >= 1:
		verdict = "ahead of"
	case pct <= -1:
		verdict = "short of"
	}
	var title string
	switch g.r.IntN(4) {
	case 0:
		title = fmt.Sprintf("%s %s results: EPS %s vs %s expected", c.short, quarter, usd(actual), usd(consensus))
	case 1:
		if pct >= 1 {
			title = fmt.Sprintf("%s beats estimates as revenue %s to $%.1fB", c.short, moved(growth), revenue)
		} else if pct <= -1 {
			title = fmt.Sprintf("%s misses earnings estimates; revenue %s to $%.1fB", c.short, moved(growth), revenue)
		} else {
			title = fmt.Sprintf("%s reports %s earnings in line with forecasts", c.short, quarter)
		}
	case 2:
		title = fmt.Sprintf("%s posts %s EPS of %s, %s consensus", c.short, quarter, usd(actual), verdict)
	default:
		title = fmt.Sprintf("%s %s: revenue $%.1fB (%+.1f%% y/y), EPS %s", c.short, quarter, revenue, growth, usd(actual))
	}
	summary := fmt.Sprintf("%s reported %s earnings of %s per share against a consensus of %s (%+.1f%%), on revenue of $%.2f billion, %s %.1f%% from a year earlier. %s %s",
		c.Name, quarter, usd(actual), usd(consensus), pct, revenue, upDown(growth), math.Abs(growth),
		sentence(c.short, g.pick(drivers[c.industry])), g.pick(mgmtLines))
	notes := g.pick([]string{
		"Beat quality looks %s: check the tax rate and buyback contribution.",
		"Margin bridge %s versus our model; revisit segment mix.",
		"Call tone %s; management avoided questions on pricing.",
		"Street whisper was above consensus; reaction may be %s.",
	})
	notes = fmt.Sprintf(notes, g.pick([]string{"high", "low", "mixed", "better than feared", "softer than headline"}))
	g.add(c, "earnings", at, title, summary, pct, "eps_pct", "Company press release", notes)
}

func (g *gen) guidance(c *company, at time.Time, quarter string) {
	pct := clamp(round(g.r.NormFloat64()*4, 1), -12, 12)
	period := g.pick([]string{"next-quarter", "full-year"})
	var verb string
	switch {
	case pct >= 1.5:
		verb = g.pick([]string{"raises", "lifts"})
	case pct <= -1.5:
		verb = g.pick([]string{"cuts", "lowers"})
	default:
		verb = "reaffirms"
	}
	title := fmt.Sprintf("%s %s %s revenue outlook", c.short, verb, period)
	if g.r.IntN(2) == 0 {
		title = fmt.Sprintf("%s %s %s guidance alongside %s results", c.short, verb, period, quarter)
	}
	summary := fmt.Sprintf("With its %s results, %s guided %s revenue to a midpoint %.1f%% %s the analyst consensus. %s",
		quarter, c.short, period, math.Abs(pct), aboveBelow(pct), g.pick(guidanceReasons))
	g.add(c, "guidance", at, title, summary, pct, "guidance_pct", "Earnings call",
		g.pick([]string{"Guide embeds conservative FX; upside if the dollar weakens.", "Range is wide; treat the midpoint with care.", "Second guide change this year; credibility discount applies.", "Consistent with channel checks."}))
}

func (g *gen) launch(c *company, at time.Time) {
	product := g.pick(products[c.industry])
	s := round(g.between(0.05, 0.75), 2)
	var title, summary string
	switch g.r.IntN(5) {
	case 0:
		s = -round(g.between(0.2, 0.6), 2)
		title = fmt.Sprintf("%s delays launch of %s", c.short, product)
		summary = fmt.Sprintf("%s pushed back the release of %s by about a quarter, citing %s. %s", c.Name, product, g.pick([]string{"supplier constraints", "final certification work", "software stability issues", "a change in launch markets"}), g.pick(launchContext))
	case 1:
		title = fmt.Sprintf("%s unveils %s", c.short, product)
		summary = fmt.Sprintf("At its %s event, %s introduced %s, with availability planned for %s. %s", g.pick([]string{"spring", "autumn", "developer", "investor"}), c.short, product, g.pick([]string{"next month", "the coming quarter", "early next year", "selected markets first"}), g.pick(launchContext))
	default:
		title = fmt.Sprintf("%s launches %s", c.short, product)
		summary = fmt.Sprintf("%s launched %s %s. %s", c.Name, product, g.pick([]string{"in the United States and Europe", "worldwide", "in twelve markets", "in North America first"}), g.pick(launchContext))
	}
	g.add(c, "product_launch", at, title, summary, s, "sentiment", g.pick([]string{"Company press release", "Product event", "Company blog"}),
		g.pick([]string{"Launch cadence on plan.", "Channel checks suggest limited inventory at launch.", "Pricing undercuts the main competitor.", "Revenue contribution unlikely before next fiscal year."}))
}

func (g *gen) regulatory(c *company, at time.Time) {
	rt := regulatory[c.industry][g.r.IntN(len(regulatory[c.industry]))]
	reg, topic := rt[0], rt[1]
	var title, summary string
	var s float64
	switch g.r.IntN(4) {
	case 0:
		s = -round(g.between(0.3, 0.8), 2)
		title = fmt.Sprintf("%s opens inquiry into %s over %s", reg, c.short, topic)
		summary = fmt.Sprintf("The %s said it has opened a formal inquiry into %s concerning %s. %s said it would cooperate fully and does not expect a material impact on results.", reg, c.Name, topic, c.short)
	case 1:
		fine := 20 + g.r.IntN(480)
		s = -round(g.between(0.2, 0.6), 2)
		title = fmt.Sprintf("%s settles with %s for $%dM over %s", c.short, reg, fine, topic)
		summary = fmt.Sprintf("%s agreed to pay $%d million to resolve the %s's review of %s, without admitting wrongdoing. The amount was largely reserved in prior quarters.", c.Name, fine, reg, topic)
	case 2:
		s = round(g.between(0.3, 0.8), 2)
		title = fmt.Sprintf("%s clears %s on %s", reg, c.short, topic)
		summary = fmt.Sprintf("The %s closed its review of %s concerning %s without further action, removing an overhang that analysts had flagged for several quarters.", reg, c.Name, topic)
	default:
		s = round(g.between(-0.2, 0.2), 2)
		title = fmt.Sprintf("%s seeks more information from %s on %s", reg, c.short, topic)
		summary = fmt.Sprintf("%s disclosed that the %s requested additional documents on %s. The company described the request as routine.", c.Name, reg, topic)
	}
	g.add(c, "regulatory", at, title, summary, s, "sentiment", reg+" statement",
		g.pick([]string{"Legal desk sees low probability of a material fine.", "Precedent cases settled within 18 months.", "Headline risk exceeds financial risk.", "Watch for a parallel EU action."}))
}

func (g *gen) deal(c *company, at time.Time) {
	target := g.pick(namePrefixes) + " " + g.pick(nameSuffixes[c.Sector])
	size := round(float64(c.MarketCapUSD)/1e9*g.between(0.002, 0.04), 1)
	if size < 0.1 {
		size = 0.1
	}
	var title, summary string
	var s float64
	switch g.r.IntN(4) {
	case 0:
		s = round(g.between(0.1, 0.6), 2)
		title = fmt.Sprintf("%s to acquire %s for $%.1fB", c.short, target, size)
		summary = fmt.Sprintf("%s agreed to buy %s in an all-cash deal valued at $%.1f billion, expected to close %s. %s", c.Name, target, size, g.pick([]string{"within six months", "in the first half of next year", "subject to regulatory approval"}), g.pick(dealRationale))
	case 1:
		s = round(g.between(-0.1, 0.4), 2)
		title = fmt.Sprintf("%s agrees to sell its %s unit to %s", c.short, g.pick([]string{"legacy hardware", "regional", "consumer finance", "logistics", "media licensing"}), target)
		summary = fmt.Sprintf("%s will divest the business to %s for $%.1f billion, sharpening its focus on core operations. Proceeds are earmarked for debt reduction and buybacks.", c.Name, target, size)
	case 2:
		s = round(g.between(0.05, 0.35), 2)
		title = fmt.Sprintf("%s completes acquisition of %s", c.short, target)
		summary = fmt.Sprintf("%s closed its $%.1f billion purchase of %s after receiving the remaining regulatory approvals. %s", c.Name, size, target, g.pick(dealRationale))
	default:
		s = -round(g.between(0.1, 0.5), 2)
		title = fmt.Sprintf("%s abandons bid for %s", c.short, target)
		summary = fmt.Sprintf("%s withdrew its $%.1f billion offer for %s after failing to agree on terms, and will pay a $%dM break fee.", c.Name, size, target, 5+g.r.IntN(95))
	}
	g.add(c, "m_and_a", at, title, summary, s, "sentiment", g.pick([]string{"Company press release", "Deal announcement"}),
		g.pick([]string{"Multiple looks full; synergy case thin.", "Accretive in year two on our numbers.", "Antitrust review likely to be extended.", "Management has a mixed integration record."}))
}

func (g *gen) otherFiling(c *company, at time.Time) {
	var title, summary string
	var s float64
	switch g.r.IntN(4) {
	case 0:
		s = round(g.between(0.05, 0.3), 2)
		title = fmt.Sprintf("Form 4: %s director buys %d shares", c.short, 1000*(1+g.r.IntN(40)))
		summary = fmt.Sprintf("A director of %s reported an open-market purchase of the company's shares in a Form 4 filing.", c.Name)
	case 1:
		s = -round(g.between(0.05, 0.3), 2)
		title = fmt.Sprintf("%s 8-K: %s to step down", c.short, g.pick([]string{"chief financial officer", "chief operating officer", "general counsel", "head of the largest segment"}))
		summary = fmt.Sprintf("%s disclosed a leadership change in an 8-K filing; an interim replacement has been named and a search is under way.", c.Name)
	case 2:
		s = -round(g.between(0, 0.25), 2)
		title = fmt.Sprintf("%s files S-3 shelf registration", c.short)
		summary = fmt.Sprintf("%s filed a mixed shelf registration allowing it to issue debt or equity, which it described as general corporate housekeeping.", c.Name)
	default:
		s = round(g.between(-0.1, 0.2), 2)
		title = fmt.Sprintf("Schedule 13G shows a new 5%% holder in %s", c.short)
		summary = fmt.Sprintf("A passive institutional investor reported a stake above 5%% in %s in a Schedule 13G filing.", c.Name)
	}
	g.add(c, "filing", at, title, summary, s, "sentiment", "SEC EDGAR",
		g.pick([]string{"Not thesis-changing.", "Flag for the governance review.", "Second such filing this quarter.", "Noise; no model change."}))
}

func companyList() []company {
	c := func(t, n, short, s string, capBn float64, industry string) company {
		return company{Ticker: t, Name: n, Sector: s, MarketCapUSD: int64(capBn * 1e9), short: short, industry: industry}
	}
	return []company{
		c("AAPL", "Apple Inc.", "Apple", "Technology", 3600, "hardware"),
		c("MSFT", "Microsoft Corp.", "Microsoft", "Technology", 3500, "software"),
		c("NVDA", "NVIDIA Corp.", "Nvidia", "Semiconductors", 4200, "chips"),
		c("GOOGL", "Alphabet Inc.", "Alphabet", "Communication Services", 2900, "internet"),
		c("AMZN", "Amazon.com Inc.", "Amazon", "Consumer Discretionary", 2400, "retail"),
		c("META", "Meta Platforms Inc.", "Meta", "Communication Services", 1700, "internet"),
		c("TSLA", "Tesla Inc.", "Tesla", "Consumer Discretionary", 1300, "autos"),
		c("AVGO", "Broadcom Inc.", "Broadcom", "Semiconductors", 1600, "chips"),
		c("BRK.B", "Berkshire Hathaway Inc.", "Berkshire", "Financials", 1050, "conglomerate"),
		c("JPM", "JPMorgan Chase & Co.", "JPMorgan", "Financials", 830, "banks"),
		c("V", "Visa Inc.", "Visa", "Financials", 660, "payments"),
		c("LLY", "Eli Lilly and Co.", "Eli Lilly", "Health Care", 900, "pharma"),
		c("UNH", "UnitedHealth Group Inc.", "UnitedHealth", "Health Care", 300, "managed care"),
		c("JNJ", "Johnson & Johnson", "J&J", "Health Care", 460, "pharma"),
		c("XOM", "Exxon Mobil Corp.", "Exxon", "Energy", 480, "oil"),
		c("WMT", "Walmart Inc.", "Walmart", "Consumer Staples", 810, "retail"),
		c("PG", "Procter & Gamble Co.", "P&G", "Consumer Staples", 350, "staples"),
		c("KO", "Coca-Cola Co.", "Coca-Cola", "Consumer Staples", 300, "staples"),
		c("COST", "Costco Wholesale Corp.", "Costco", "Consumer Staples", 410, "retail"),
		c("NFLX", "Netflix Inc.", "Netflix", "Communication Services", 480, "media"),
		c("ORCL", "Oracle Corp.", "Oracle", "Technology", 650, "software"),
		c("CRM", "Salesforce Inc.", "Salesforce", "Technology", 240, "software"),
		c("ADBE", "Adobe Inc.", "Adobe", "Technology", 150, "software"),
		c("AMD", "Advanced Micro Devices Inc.", "AMD", "Semiconductors", 390, "chips"),
		c("INTC", "Intel Corp.", "Intel", "Semiconductors", 170, "chips"),
		c("BA", "Boeing Co.", "Boeing", "Industrials", 160, "aero"),
		c("CAT", "Caterpillar Inc.", "Caterpillar", "Industrials", 260, "machinery"),
		c("GE", "GE Aerospace", "GE Aerospace", "Industrials", 310, "aero"),
		c("DIS", "Walt Disney Co.", "Disney", "Communication Services", 200, "media"),
		c("NKE", "Nike Inc.", "Nike", "Consumer Discretionary", 95, "apparel"),
		c("PFE", "Pfizer Inc.", "Pfizer", "Health Care", 140, "pharma"),
		c("F", "Ford Motor Co.", "Ford", "Consumer Discretionary", 46, "autos"),
		c("UBER", "Uber Technologies Inc.", "Uber", "Industrials", 190, "mobility"),
		c("SHOP", "Shopify Inc.", "Shopify", "Technology", 200, "software"),
		c("SNAP", "Snap Inc.", "Snap", "Communication Services", 14, "internet"),
		c("RIVN", "Rivian Automotive Inc.", "Rivian", "Consumer Discretionary", 16, "autos"),
		c("ROKU", "Roku Inc.", "Roku", "Communication Services", 14, "media"),
		c("ETSY", "Etsy Inc.", "Etsy", "Consumer Discretionary", 6.5, "retail"),
		c("LYFT", "Lyft Inc.", "Lyft", "Industrials", 7.5, "mobility"),
		c("PLUG", "Plug Power Inc.", "Plug Power", "Energy", 2.2, "hydrogen"),
	}
}

var mgmtLines = []string{
	"Management said it remains confident in its multi-year targets.",
	"The company announced an additional share repurchase authorisation.",
	"Executives flagged a cautious consumer in the closing weeks of the quarter.",
	"The board declared an unchanged quarterly dividend.",
	"Management pointed to currency headwinds of about two percentage points.",
	"Executives said capital spending would rise next year.",
}

var guidanceReasons = []string{
	"Management cited stronger order intake in the final month of the quarter.",
	"The company blamed currency moves and slower enterprise spending.",
	"Executives pointed to new product cycles ramping in the second half.",
	"The outlook assumes no improvement in the macro environment.",
	"Pricing actions and cost savings underpin the new range.",
}

var filingDetails = []string{
	"The filing repeats the figures released with the results and updates risk factors.",
	"Segment disclosures were reorganised to match the new reporting structure.",
	"The filing notes no material weaknesses in internal controls.",
	"Legal-proceedings disclosures were updated for pending litigation.",
}

var launchContext = []string{
	"Analysts expect a modest revenue contribution in the first year.",
	"The move puts it in direct competition with larger rivals.",
	"Pricing was set below the main competing offer.",
	"The company said early customer trials exceeded expectations.",
	"The launch extends a product line introduced last year.",
}

var dealRationale = []string{
	"The company expects the deal to add to earnings within two years.",
	"The target brings engineering talent and a customer base in Europe.",
	"Management framed the purchase as filling a gap in its product line-up.",
	"The deal is the company's largest in five years.",
}

// drivers, products and regulatory are keyed by industry, so that a carmaker never
// reports theme-park attendance.
var drivers = map[string][]string{
	"hardware":     {"smartphone unit sales rose on the new model cycle", "services revenue reached a record", "wearables sales declined", "demand in China softened"},
	"software":     {"cloud subscription revenue grew faster than expected", "enterprise renewals were delayed into the next quarter", "demand for AI infrastructure services lifted bookings", "operating margin widened on lower data-center costs", "merchant volumes grew on cross-border sales"},
	"chips":        {"data-center accelerator shipments set a record", "PC and handset inventories normalised", "gross margin was squeezed by new-node ramp costs", "networking chip demand from cloud providers stayed strong", "export restrictions weighed on sales to China"},
	"internet":     {"advertising revenue recovered on stronger pricing", "engagement rose after the feed redesign", "AI infrastructure spending pushed capital expenditure higher", "daily active users grew in emerging markets", "cloud revenue growth accelerated"},
	"media":        {"the ad-supported tier added more members than forecast", "content amortisation costs climbed", "streaming operating margin improved", "platform revenue grew on higher ad pricing", "theme-park attendance softened"},
	"autos":        {"vehicle deliveries came in below the prior quarter", "price cuts compressed automotive gross margin", "warranty costs rose", "energy-storage deployments set a record", "commercial-van demand held up"},
	"retail":       {"membership fees and advertising lifted profit", "e-commerce sales grew at a double-digit rate", "grocery volumes grew while price increases moderated", "active buyers declined for a third quarter", "cloud revenue growth accelerated"},
	"apparel":      {"wholesale orders from retailers were weaker", "direct-to-consumer sales declined", "promotional activity increased in North America", "sales in China rebounded"},
	"banks":        {"net interest income held up despite rate cuts", "investment-banking fees rebounded", "credit-card charge-offs edged higher", "trading revenue hit a record"},
	"payments":     {"cross-border payment volumes accelerated", "processed transactions grew 10%", "incentive payments to clients rose", "value-added services grew faster than core fees"},
	"conglomerate": {"insurance underwriting profit improved", "railroad volumes were flat", "investment gains swung quarterly earnings", "the energy unit recorded wildfire-related charges"},
	"pharma":       {"sales of its obesity treatment exceeded estimates", "a patent expiry reduced sales of a leading drug", "vaccine demand was lower than a year earlier", "the pharmaceutical segment offset weaker devices sales"},
	"managed care": {"medical cost trends ran above plan", "Medicare Advantage membership shrank", "the health-services unit grew revenue", "pharmacy benefits revenue rose"},
	"oil":          {"lower crude prices reduced upstream earnings", "refining margins widened", "production volumes rose after a new field came online", "cost cuts improved cash flow"},
	"hydrogen":     {"electrolyser shipments rose", "project write-downs hit margins", "cash burn narrowed on cost cuts", "hydrogen fuel margins stayed negative"},
	"staples":      {"volumes grew while price increases moderated", "input-cost inflation eased", "emerging-market demand softened", "organic sales grew 4%"},
	"aero":         {"aircraft deliveries increased from the prior quarter", "backlog reached a record", "supply-chain delays limited output", "aftermarket services revenue grew"},
	"machinery":    {"dealer inventories were reduced", "backlog reached a record", "demand for power-generation equipment from data centers surged", "mining equipment sales slowed"},
	"mobility":     {"mobility trips grew at a double-digit rate", "delivery bookings accelerated", "insurance costs weighed on margins", "active riders reached a record"},
}

var products = map[string][]string{
	"hardware":     {"a new smartphone line-up", "a redesigned laptop with in-house silicon", "a mixed-reality headset update", "a services subscription bundle"},
	"software":     {"an AI assistant for enterprise search", "a managed vector database service", "a zero-trust security suite", "a low-code workflow builder", "a point-of-sale terminal for small shops"},
	"chips":        {"a 3 nm data-center accelerator", "a low-power edge inference chip", "a next-generation networking switch chip", "a PCIe 6.0 storage controller", "a workstation GPU architecture"},
	"internet":     {"a generative video tool for advertisers", "a redesigned messaging app", "an AI assistant built into search", "a creator monetisation programme", "smart glasses with an on-device assistant"},
	"media":        {"an ad-supported streaming tier", "a live sports package", "a streaming bundle with a wireless carrier", "a streaming player with voice search"},
	"autos":        {"a lower-priced electric crossover", "an updated driver-assistance package", "a battery-electric pickup trim", "a home energy storage unit"},
	"retail":       {"same-day delivery in twelve new cities", "a premium membership tier", "a private-label grocery range", "an advertising tool for sellers"},
	"apparel":      {"a running shoe line with recycled foam", "a basketball signature line", "a redesigned membership app"},
	"banks":        {"a small-business lending platform", "a tokenised money-market fund", "a consumer budgeting app"},
	"payments":     {"a real-time cross-border payments service", "tap-to-pay for small merchants", "a payments API for AI agents"},
	"conglomerate": {"a specialty insurance line for data centers", "a renewable-power joint venture"},
	"pharma":       {"a once-weekly obesity treatment", "an RSV vaccine for older adults", "a biosimilar for rheumatoid arthritis", "an oral migraine treatment"},
	"managed care": {"a digital care-navigation service", "an expanded value-based primary-care network"},
	"oil":          {"a carbon-capture hub on the Gulf Coast", "a lithium extraction project", "a low-carbon hydrogen project"},
	"hydrogen":     {"a fuel-cell system for warehouses", "an electrolyser for industrial sites", "a liquid hydrogen plant"},
	"staples":      {"a zero-sugar beverage line", "a refillable packaging pilot", "a premium laundry detergent range"},
	"aero":         {"a fuel-efficient narrow-body engine upgrade", "a freighter version of its wide-body jet", "a predictive maintenance service for airlines"},
	"machinery":    {"an autonomous mining haul truck", "a hybrid-electric excavator", "a gas-turbine package for data centers"},
	"mobility":     {"a rider safety feature set", "a robotaxi partnership in two cities", "a freight-matching marketplace", "a commuter subscription"},
}

// regulatory pairs each industry's regulators with a matter they would look into.
var regulatory = map[string][][2]string{
	"hardware":     {{"European Commission", "app store practices"}, {"Justice Department", "smartphone market practices"}, {"UK Competition and Markets Authority", "mobile browser engines"}},
	"software":     {{"FTC", "data-privacy practices"}, {"European Commission", "cloud licensing terms"}, {"UK Competition and Markets Authority", "cloud egress fees"}},
	"chips":        {{"Commerce Department", "export licences for AI chips"}, {"European Commission", "a pending licensing deal"}, {"State Administration for Market Regulation", "a past acquisition"}},
	"internet":     {{"Justice Department", "default search agreements"}, {"European Commission", "content moderation duties"}, {"FTC", "child-safety controls"}, {"FTC", "ad-targeting practices"}},
	"media":        {{"FCC", "broadcast licence transfers"}, {"FTC", "subscription cancellation practices"}, {"European Commission", "streaming content quotas"}},
	"autos":        {{"NHTSA", "a driver-assistance recall"}, {"EPA", "emissions certification"}, {"NHTSA", "a seat-belt recall"}},
	"retail":       {{"FTC", "subscription cancellation practices"}, {"FTC", "marketplace seller fees"}, {"European Commission", "marketplace data use"}},
	"apparel":      {{"FTC", "recycled-material claims"}, {"Customs and Border Protection", "supply-chain import rules"}},
	"banks":        {{"SEC", "record-keeping practices"}, {"CFPB", "overdraft fees"}, {"Federal Reserve", "capital requirements"}},
	"payments":     {{"Justice Department", "debit routing practices"}, {"European Commission", "interchange fees"}},
	"conglomerate": {{"SEC", "disclosure of insurance reserves"}, {"Federal Energy Regulatory Commission", "wildfire-mitigation plans"}},
	"pharma":       {{"FDA", "a label expansion"}, {"FDA", "manufacturing-site inspections"}, {"European Medicines Agency", "a marketing authorisation"}},
	"managed care": {{"CMS", "Medicare Advantage billing"}, {"Justice Department", "physician-group acquisitions"}},
	"oil":          {{"EPA", "methane-emissions rules"}, {"Energy Department", "an LNG export permit"}},
	"hydrogen":     {{"Energy Department", "a loan guarantee"}, {"Treasury Department", "hydrogen tax-credit eligibility"}},
	"staples":      {{"FDA", "labelling claims"}, {"FTC", "supplier pricing practices"}, {"European Commission", "packaging-waste rules"}},
	"aero":         {{"FAA", "production-rate limits"}, {"FAA", "engine inspection intervals"}, {"OSHA", "a worker-safety review"}},
	"machinery":    {{"EPA", "off-road engine emissions"}, {"OSHA", "a worker-safety review"}},
	"mobility":     {{"Labor Department", "driver classification"}, {"FTC", "subscription cancellation practices"}, {"NHTSA", "autonomous-vehicle reporting"}},
}

// priceToSales is a rough sector multiple used to size quarterly revenue.
var priceToSales = map[string]float64{
	"Technology": 10, "Semiconductors": 15, "Communication Services": 6, "Consumer Discretionary": 3,
	"Financials": 5, "Health Care": 5, "Energy": 1.4, "Consumer Staples": 2, "Industrials": 3,
}

var namePrefixes = []string{"Halden", "Norvik", "Brightwater", "Calder", "Ostrava", "Pinecrest", "Lumen", "Vantor", "Kestrel", "Arbor", "Solace", "Meridian", "Tessel", "Quarry", "Fenwick", "Corvid", "Ridgeline", "Aurelia", "Stratus", "Bellwether"}

var nameSuffixes = map[string][]string{
	"Technology":             {"Software", "Analytics", "Systems", "Labs"},
	"Semiconductors":         {"Semiconductor", "Photonics", "Microsystems"},
	"Communication Services": {"Studios", "Media", "Networks"},
	"Consumer Discretionary": {"Mobility", "Outfitters", "Commerce"},
	"Financials":             {"Payments", "Capital", "Insurance"},
	"Health Care":            {"Therapeutics", "Biosciences", "Diagnostics"},
	"Energy":                 {"Energy", "Hydrogen", "Renewables"},
	"Consumer Staples":       {"Foods", "Beverages", "Brands"},
	"Industrials":            {"Robotics", "Logistics", "Aerospace"},
}

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	v := math.Round(x*p) / p
	if v == 0 {
		return 0 // never -0
	}
	return v
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}

// usd formats an EPS figure: $1.23 or -$0.45.
func usd(x float64) string {
	if x < 0 {
		return fmt.Sprintf("-$%.2f", -x)
	}
	return fmt.Sprintf("$%.2f", x)
}

func moved(growth float64) string {
	if growth < 0 {
		return "falls"
	}
	return "rises"
}

func upDown(growth float64) string {
	if growth < 0 {
		return "down"
	}
	return "up"
}

func aboveBelow(pct float64) string {
	if pct < 0 {
		return "below"
	}
	return "above"
}

// sentence turns a driver clause into a sentence about the company.
func sentence(short, clause string) string {
	return "At " + short + ", " + clause + "."
}
