package tollgate

import (
	"net/http"
	"strconv"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
)

// Response header names, in canonical form (what Header.Set makes of them), so
// that setting them does not canonicalise a copy on every request.
const (
	HeaderQuotaLimit     = "X-Quota-Limit"
	HeaderQuotaRemaining = "X-Quota-Remaining"
	// HeaderQuotaReset carries the end of the quota cycle in unix seconds.
	HeaderQuotaReset = "X-Quota-Reset"

	hLimit      = "X-Ratelimit-Limit"
	hRemaining  = "X-Ratelimit-Remaining"
	hReset      = "X-Ratelimit-Reset"
	hPolicy     = "Ratelimit-Policy"
	hRateLimit  = "Ratelimit"
	hRetryAfter = "Retry-After"
)

// ExposedHeaders lists every response header the gate sets, for a CORS
// configuration's exposed headers.
var ExposedHeaders = []string{
	HeaderQuotaLimit, HeaderQuotaRemaining, HeaderQuotaReset,
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
	"RateLimit-Policy", "RateLimit", hRetryAfter,
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// setBurstHeaders sets the rate limit headers of w for p and returns the whole
// seconds until the window resets (never negative).
func setBurstHeaders(h http.Header, p *plan, w ratelimit.Window, now time.Time) int64 {
	reset := w.Reset.Unix()
	t := max(reset-now.Unix(), 0)
	remaining := itoa(max(w.Remaining, 0))
	h.Set(hLimit, p.limit)
	h.Set(hRemaining, remaining)
	h.Set(hReset, itoa(reset))
	h.Set(hPolicy, p.policy)
	h.Set(hRateLimit, p.rlPrefix+remaining+";t="+itoa(t))
	return t
}

// setQuotaHeaders sets the X-Quota-* headers from u, replacing earlier values.
func (g *Gate) setQuotaHeaders(h http.Header, u quota.Usage) {
	h.Set(HeaderQuotaLimit, itoa(u.Limit))
	h.Set(HeaderQuotaRemaining, itoa(u.Remaining()))
	h.Set(HeaderQuotaReset, itoa(quota.CycleEnd(u.CycleStart, g.cycle).Unix()))
}

// meterWriter is the ResponseWriter a metered handler writes to: on the answer's
// first status it decides whether the call counts (Config.Charge) and, if not, sets
// the quota headers to show the call given back.
type meterWriter struct {
	http.ResponseWriter
	g       *Gate
	u       quota.Usage
	decided bool
	charged bool
}

// decide settles the call on status, once, and reports whether it counts.
func (m *meterWriter) decide(status int) bool {
	if m.decided {
		return m.charged
	}
	m.decided = true
	m.charged = m.g.charge(status)
	if !m.charged {
		u := m.u
		u.Used = max(u.Used-1, 0)
		m.g.setQuotaHeaders(m.Header(), u)
	}
	return m.charged
}

func (m *meterWriter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		m.decide(status)
	}
	m.ResponseWriter.WriteHeader(status)
}

func (m *meterWriter) Write(b []byte) (int, error) {
	m.decide(http.StatusOK)
	return m.ResponseWriter.Write(b)
}

// Flush implements http.Flusher: a flush sends the headers, with 200 unless a
// status was written.
func (m *meterWriter) Flush() { _ = m.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (m *meterWriter) FlushError() error {
	m.decide(http.StatusOK)
	return http.NewResponseController(m.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (m *meterWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }
