package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ulule/limiter/v3"
)

// Rate is a burst limit: at most Limit requests in each window of Period. A
// valid rate has a Limit of at least 1 and a Period of at least a millisecond
// (the resolution of Redis expiry); the zero Rate is invalid.
type Rate struct {
	Limit  int64
	Period time.Duration
}

// valid reports whether r can be counted: Limiter.Allow refuses other rates, and
// the stores return an error for them.
func (r Rate) valid() bool { return r.Limit >= 1 && r.Period >= time.Millisecond }

// ParseRate parses a rate in ulule's format, "<limit>-<S|M|H|D>": a number of
// requests per second, minute, hour or day ("120-M", "5-s"). The limit must be at
// least 1.
func ParseRate(s string) (Rate, error) {
	r, err := parseRate(s)
	if err != nil {
		return Rate{}, fmt.Errorf("ratelimit: %w", err)
	}
	return r, nil
}

// parseRate is ParseRate without the package prefix on its errors.
func parseRate(s string) (Rate, error) {
	lr, err := limiter.NewRateFromFormatted(s)
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: want <limit>-<S|M|H|D>, for example 100-M: %v", s, err)
	}
	if lr.Limit < 1 {
		return Rate{}, fmt.Errorf("rate %q: the limit must be at least 1", s)
	}
	return Rate{Limit: lr.Limit, Period: lr.Period}, nil
}

// String returns r in the format ParseRate reads ("120-M"), with the period's
// letter in upper case. A Period other than a second, a minute, an hour or a day
// prints as limit/period ("5/2s"), which ParseRate does not read.
func (r Rate) String() string {
	var unit byte
	switch r.Period {
	case time.Second:
		unit = 'S'
	case time.Minute:
		unit = 'M'
	case time.Hour:
		unit = 'H'
	case 24 * time.Hour:
		unit = 'D'
	default:
		return strconv.FormatInt(r.Limit, 10) + "/" + r.Period.String()
	}
	return strconv.FormatInt(r.Limit, 10) + "-" + string(unit)
}

// ParseRates parses a list of named rates such as "free=20-M,gold=1200-M" (the
// format of a server's rate setting). Names are letters, digits, '_', '-' and '.';
// each appears once. Spaces around entries are ignored and the empty string gives
// an empty map. The error names the bad entry.
func ParseRates(s string) (map[string]Rate, error) {
	rates := make(map[string]Rate)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, formatted, ok := strings.Cut(entry, "=")
		name, formatted = strings.TrimSpace(name), strings.TrimSpace(formatted)
		if !ok || name == "" || formatted == "" {
			return nil, fmt.Errorf("ratelimit: rate entry %q: want name=rate, for example gold=100-M", entry)
		}
		if err := validName(name); err != nil {
			return nil, fmt.Errorf("ratelimit: rate entry %q: %w", entry, err)
		}
		if _, dup := rates[name]; dup {
			return nil, fmt.Errorf("ratelimit: rate entry %q: %q appears twice", entry, name)
		}
		r, err := parseRate(formatted)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: rate entry %q: %w", entry, err)
		}
		rates[name] = r
	}
	return rates, nil
}

// validName accepts names made of letters, digits, '_', '-' and '.', which are
// safe in bucket names and header parameters.
func validName(name string) error {
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("name %q: use letters, digits, '_', '-' or '.'", name)
		}
	}
	return nil
}

// PolicyHeader returns the value of the IETF draft's RateLimit-Policy header for
// a policy called name with rate r: `"name";q=<limit>;w=<window in seconds>`, for
// example `"gold";q=100;w=60`. name should be one ParseRates accepts, which
// needs no escaping inside the quotes; any other is quoted as a Go string.
func PolicyHeader(name string, r Rate) string {
	return strconv.Quote(name) + ";q=" + strconv.FormatInt(r.Limit, 10) +
		";w=" + strconv.FormatInt(int64(r.Period/time.Second), 10)
}
