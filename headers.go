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

// scratch holds one request's gate headers. The burst step records its window and
// the quota step's headers are set with it, so that the numbers of both steps share
// one string and the values' slices one array: setting the gate's headers costs
// one allocation a request rather than one a header. The values are the request's
// own (nothing is shared between requests), so a handler may change them.
type scratch struct {
	vals [16]string
	used int
	omit Headers // the families not to set (Config.OmitHeaders)
	buf  [256]byte
	now  time.Time // the wall clock when the gate took the request
	// burst is the plan whose burst limit the request passed (nil: none), the
	// plan the quota's RateLimit entries follow; counted says whether the burst
	// store counted the request, in a window that left remaining calls and
	// resets at reset (unix seconds), t seconds from now.
	burst               *plan
	counted             bool
	remaining, reset, t int64
	meter               meterWriter // the handler's writer, allocated with the rest
}

// setBurstPolicy sets the headers of p's burst limit that need no count (the
// burst store is down), and takes p for the quota's entries to follow.
func (s *scratch) setBurstPolicy(h http.Header, p *plan) {
	s.burst, s.counted = p, false
	if s.omit&HeadersXRateLimit == 0 {
		s.put(h, hLimit, p.limit)
	}
	if s.omit&HeadersIETF == 0 {
		s.put(h, hPolicy, p.policy)
	}
}

// countBurst records the window of p's burst limit that counted the request, for
// setHeaders, and returns the whole seconds until it resets (never negative).
func (s *scratch) countBurst(p *plan, w ratelimit.Window) int64 {
	s.burst, s.counted = p, true
	s.remaining, s.reset = max(w.Remaining, 0), w.Reset.Unix()
	s.t = max(s.reset-s.now.Unix(), 0)
	return s.t
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

// quotaPolicySuffix ends the name of the IETF RateLimit policy entry of the
// monthly quota: the plan's name and this suffix ("pro-monthly"), beside the
// entry of the plan's burst limit, which bears the plan's name.
const quotaPolicySuffix = "-monthly"

// setHeaders sets the headers of the burst window s counted (see countBurst) and,
// when u is not nil, the X-Quota-* headers from u, replacing earlier values, with
// the quota as a second policy in RateLimit-Policy and RateLimit beside the burst
// limit's, as draft-ietf-httpapi-ratelimit-headers lists several:
//
//	RateLimit-Policy: "pro";q=600;w=60, "pro-monthly";q=10000;w=2592000
//	RateLimit: "pro";r=599;t=42, "pro-monthly";r=9876;t=1234567
//
// The quota's entry is named for the plan whose burst entry it follows; a plan
// without a burst rate announces its quota in X-Quota-* only.
func (g *Gate) setHeaders(s *scratch, h http.Header, u *quota.Usage) {
	xrl := s.counted && s.omit&HeadersXRateLimit == 0
	ietf := s.burst != nil && s.omit&HeadersIETF == 0
	xq := u != nil && s.omit&HeadersXQuota == 0
	// The values, appended to b one after the other; ends[i] is where value i
	// ends. Which values there are follows from xrl, ietf and xq.
	b := s.buf[:0]
	var ends [7]int
	n := 0
	end := func() { ends[n] = len(b); n++ }
	if xrl {
		b = strconv.AppendInt(b, s.remaining, 10)
		end()
		b = strconv.AppendInt(b, s.reset, 10)
		end()
	}
	var reset int64
	if u != nil {
		reset = quota.CycleEnd(u.CycleStart, g.cycle).Unix()
	}
	if xq {
		b = strconv.AppendInt(b, u.Limit, 10)
		end()
		b = strconv.AppendInt(b, u.Remaining(), 10)
		end()
		b = strconv.AppendInt(b, reset, 10)
		end()
	}
	policy := ietf && u != nil // RateLimit-Policy gets the quota's entry
	if policy {
		// The burst entry, then "name-monthly";q=L;w=W
		b = append(b, s.burst.policy...)
		b = append(b, ", "...)
		b = append(b, s.burst.quotaName...)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, u.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(g.cycle/time.Second), 10)
		end()
	}
	rl := ietf && (s.counted || u != nil) // RateLimit has an entry
	if rl {
		// "name";r=R;t=T of the burst window (absent while the burst store is
		// down), then "name-monthly";r=R;t=T
		if s.counted {
			b = append(b, s.burst.rlPrefix...)
			b = strconv.AppendInt(b, s.remaining, 10)
			b = append(b, ";t="...)
			b = strconv.AppendInt(b, s.t, 10)
		}
		if u != nil {
			now := s.now
			if !g.wallClock {
				now = g.now()
			}
			if s.counted {
				b = append(b, ", "...)
			}
			b = append(b, s.burst.quotaName...)
			b = append(b, ";r="...)
			b = strconv.AppendInt(b, u.Remaining(), 10)
			b = append(b, ";t="...)
			b = strconv.AppendInt(b, max(reset-now.Unix(), 0), 10)
		}
		end()
	}
	all := string(b)
	i, start := 0, 0
	next := func() string {
		v := all[start:ends[i]]
		start = ends[i]
		i++
		return v
	}
	if xrl {
		s.put(h, hLimit, s.burst.limit)
		s.put(h, hRemaining, next())
		s.put(h, hReset, next())
	}
	if xq {
		s.put(h, HeaderQuotaLimit, next())
		s.put(h, HeaderQuotaRemaining, next())
		s.put(h, HeaderQuotaReset, next())
	}
	switch {
	case policy:
		s.put(h, hPolicy, next())
	case ietf && s.counted:
		s.put(h, hPolicy, s.burst.policy)
	}
	if rl {
		s.put(h, hRateLimit, next())
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
		m.g.setHeaders(m.s, m.Header(), &u)
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
