package tollgate

import (
	"net/http"
	"strconv"
	"strings"
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
	hSunset     = "Sunset"
)

// ExposedHeaders lists every response header the gate sets, for a CORS
// configuration's exposed headers.
var ExposedHeaders = []string{
	HeaderQuotaLimit, HeaderQuotaRemaining, HeaderQuotaReset,
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
	"RateLimit-Policy", "RateLimit", hRetryAfter, hSunset,
}

// Headers names families of the response headers the gate sets, for
// Config.OmitHeaders. Retry-After (on every 429 and 503) and Sunset (a key in its
// rotation grace) belong to no family: they are always set.
type Headers uint8

const (
	// HeadersXRateLimit is X-RateLimit-Limit, X-RateLimit-Remaining and
	// X-RateLimit-Reset (unix seconds): the burst limit, in the form most APIs
	// have long used.
	HeadersXRateLimit Headers = 1 << iota
	// HeadersXQuota is X-Quota-Limit, X-Quota-Remaining and X-Quota-Reset (unix
	// seconds of the cycle's end): the monthly quota.
	HeadersXQuota
	// HeadersIETF is RateLimit-Policy and RateLimit
	// (draft-ietf-httpapi-ratelimit-headers), which carry the burst limit and
	// the monthly quota both, as two policies.
	HeadersIETF
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// scratch holds one request's gate headers: the values' slices share one array and
// the numbers of each step (burst, quota) one string, so that setting the headers
// costs one allocation a step rather than one a header. The values are the
// request's own (nothing is shared between requests), so a handler may change them.
type scratch struct {
	vals [16]string
	used int
	omit Headers // the families not to set (Config.OmitHeaders)
	buf  [192]byte
	now  time.Time // the wall clock when the gate took the request
	// policy and rl are the burst limit's RateLimit-Policy and RateLimit entries
	// as set ("" when none was), which the quota's entries follow.
	policy, rl string
	// ends are where the values of the step being built end in buf (begin, end).
	ends  [5]int
	nends int
	meter meterWriter // the handler's writer, allocated with the rest
}

// setBurstPolicy sets the headers of p's burst limit that need no count (the
// burst store is down), and takes p's policy for the quota's entries to follow.
func (s *scratch) setBurstPolicy(h http.Header, p *plan) {
	s.policy = p.policy
	if s.omit&HeadersXRateLimit == 0 {
		s.put(h, hLimit, p.limit)
	}
	if s.omit&HeadersIETF == 0 {
		s.put(h, hPolicy, p.policy)
	}
}

// put sets header k (canonical) to v.
func (s *scratch) put(h http.Header, k, v string) {
	if s.used == len(s.vals) {
		h[k] = []string{v}
		return
	}
	s.vals[s.used] = v
	h[k] = s.vals[s.used : s.used+1 : s.used+1]
	s.used++
}

// begin starts a step's header values, appended to the returned buffer.
func (s *scratch) begin() []byte {
	s.nends = 0
	return s.buf[:0]
}

// end ends the value appended to b since the last one ended.
func (s *scratch) end(b []byte) []byte {
	s.ends[s.nends] = len(b)
	s.nends++
	return b
}

// num appends n to b as a value of its own.
func (s *scratch) num(b []byte, n int64) []byte { return s.end(strconv.AppendInt(b, n, 10)) }

// values returns the values ended in b as substrings of one string.
func (s *scratch) values(b []byte) [len(scratch{}.ends)]string {
	all := string(b)
	var out [len(scratch{}.ends)]string
	start := 0
	for i, end := range s.ends[:s.nends] {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// setBurstHeaders sets the rate limit headers of w for p and returns the whole
// seconds until the window resets (never negative).
func (s *scratch) setBurstHeaders(h http.Header, p *plan, w ratelimit.Window, now time.Time) int64 {
	reset := w.Reset.Unix()
	t := max(reset-now.Unix(), 0)
	b := s.begin()
	b = s.num(b, max(w.Remaining, 0))
	b = s.num(b, reset)
	// RateLimit: "name";r=R;t=T
	b = append(b, p.rlPrefix...)
	b = strconv.AppendInt(b, max(w.Remaining, 0), 10)
	b = append(b, ";t="...)
	b = s.end(strconv.AppendInt(b, t, 10))
	v := s.values(b)
	s.policy, s.rl = p.policy, v[2]
	if s.omit&HeadersXRateLimit == 0 {
		s.put(h, hLimit, p.limit)
		s.put(h, hRemaining, v[0])
		s.put(h, hReset, v[1])
	}
	if s.omit&HeadersIETF == 0 {
		s.put(h, hPolicy, p.policy)
		s.put(h, hRateLimit, v[2])
	}
	return t
}

// quotaPolicySuffix ends the name of the IETF RateLimit policy entry of the
// monthly quota: the plan's name and this suffix ("pro-monthly"), beside the
// entry of the plan's burst limit, which bears the plan's name.
const quotaPolicySuffix = "-monthly"

// setQuotaHeaders sets the X-Quota-* headers from u, replacing earlier values,
// and adds the quota to RateLimit-Policy and RateLimit as a second policy beside
// the burst limit's, as draft-ietf-httpapi-ratelimit-headers lists several:
//
//	RateLimit-Policy: "pro";q=600;w=60, "pro-monthly";q=10000;w=2592000
//	RateLimit: "pro";r=599;t=42, "pro-monthly";r=9876;t=1234567
//
// The quota's entry is named for the plan whose burst entry it follows; a plan
// without a burst rate announces its quota in X-Quota-* only.
func (g *Gate) setQuotaHeaders(s *scratch, h http.Header, u quota.Usage) {
	reset := quota.CycleEnd(u.CycleStart, g.cycle).Unix()
	b := s.begin()
	b = s.num(b, u.Limit)
	b = s.num(b, u.Remaining())
	b = s.num(b, reset)
	name := policyName(s.policy)
	if s.omit&HeadersIETF != 0 {
		name = ""
	}
	if name != "" {
		now := s.now
		if !g.wallClock {
			now = g.now()
		}
		// RateLimit-Policy: the burst entry, then "name-monthly";q=L;w=W
		b = append(b, s.policy...)
		b = append(b, ", "...)
		b = appendQuotaName(b, name)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, u.Limit, 10)
		b = append(b, ";w="...)
		b = s.end(strconv.AppendInt(b, int64(g.cycle/time.Second), 10))
		// RateLimit: the burst entry (absent while the burst store is down), then
		// "name-monthly";r=R;t=T
		if s.rl != "" {
			b = append(b, s.rl...)
			b = append(b, ", "...)
		}
		b = appendQuotaName(b, name)
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, u.Remaining(), 10)
		b = append(b, ";t="...)
		b = s.end(strconv.AppendInt(b, max(reset-now.Unix(), 0), 10))
	}
	v := s.values(b)
	if s.omit&HeadersXQuota == 0 {
		s.put(h, HeaderQuotaLimit, v[0])
		s.put(h, HeaderQuotaRemaining, v[1])
		s.put(h, HeaderQuotaReset, v[2])
	}
	if name != "" {
		s.put(h, hPolicy, v[3])
		s.put(h, hRateLimit, v[4])
	}
}

// policyName returns the quoted name that starts a RateLimit-Policy entry made by
// ratelimit.PolicyHeader (`"pro"` of `"pro";q=600;w=60`), or "" for none. Plan
// names hold no quote or backslash (entitlement.Catalog.Validate), so the name is
// what lies between the first two quotes.
func policyName(policy string) string {
	if len(policy) < 2 || policy[0] != '"' {
		return ""
	}
	end := strings.IndexByte(policy[1:], '"')
	if end < 0 {
		return ""
	}
	return policy[:end+2]
}

// appendQuotaName appends the quota entry's name for the quoted burst name.
func appendQuotaName(b []byte, quoted string) []byte {
	b = append(b, quoted[:len(quoted)-1]...)
	b = append(b, quotaPolicySuffix...)
	return append(b, '"')
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
