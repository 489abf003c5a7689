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

// scratch holds one request's gate headers: the values' slices share one array and
// the numbers one string, so that setting eight headers costs two allocations,
// not sixteen. The values are the request's own (nothing is shared between
// requests), so a handler may change them.
type scratch struct {
	vals  [9]string
	used  int
	buf   [72]byte
	now   time.Time   // the wall clock when the gate took the request
	meter meterWriter // the handler's writer, allocated with the rest
}

// set sets header k (canonical) to v.
func (s *scratch) set(h http.Header, k, v string) {
	if s.used == len(s.vals) {
		h[k] = []string{v}
		return
	}
	s.vals[s.used] = v
	h[k] = s.vals[s.used : s.used+1 : s.used+1]
	s.used++
}

// numbers renders ns into one string and returns each as a substring of it.
func (s *scratch) numbers(ns ...int64) [4]string {
	num := s.buf[:0]
	var ends [4]int
	for i, n := range ns {
		num = strconv.AppendInt(num, n, 10)
		ends[i] = len(num)
	}
	all := string(num)
	var out [4]string
	start := 0
	for i := range ns {
		out[i] = all[start:ends[i]]
		start = ends[i]
	}
	return out
}

// setBurstHeaders sets the rate limit headers of w for p and returns the whole
// seconds until the window resets (never negative).
func (s *scratch) setBurstHeaders(h http.Header, p *plan, w ratelimit.Window, now time.Time) int64 {
	reset := w.Reset.Unix()
	t := max(reset-now.Unix(), 0)
	n := s.numbers(max(w.Remaining, 0), reset, t)
	s.set(h, hLimit, p.limit)
	s.set(h, hRemaining, n[0])
	s.set(h, hReset, n[1])
	s.set(h, hPolicy, p.policy)
	s.set(h, hRateLimit, p.rlPrefix+n[0]+";t="+n[2])
	return t
}

// setQuotaHeaders sets the X-Quota-* headers from u, replacing earlier values.
func (g *Gate) setQuotaHeaders(s *scratch, h http.Header, u quota.Usage) {
	n := s.numbers(u.Limit, u.Remaining(), quota.CycleEnd(u.CycleStart, g.cycle).Unix())
	s.set(h, HeaderQuotaLimit, n[0])
	s.set(h, HeaderQuotaRemaining, n[1])
	s.set(h, HeaderQuotaReset, n[2])
}

// meterWriter is the ResponseWriter a metered handler writes to: on the answer's
// first status it decides whether the call counts (Config.Charge) and, if not, sets
// the quota headers to show the call given back.
type meterWriter struct {
	http.ResponseWriter
	g       *Gate
	s       *scratch
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
		m.g.setQuotaHeaders(m.s, m.Header(), u)
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
