package entitlement

import (
	"strings"
	"unicode/utf8"
)

// What the webhook accepts of a verified event before any of it reaches a store:
// identifiers a database keeps as they are, on PostgreSQL (whose text refuses NUL
// and invalid UTF-8) as on SQLite, so that a hostile or broken payload is a 400,
// never a store failure that Stripe would retry for days.

// maxIDLen bounds Stripe identifiers and user IDs (Stripe's own are far shorter;
// client_reference_id holds at most 200 characters).
const maxIDLen = 255

// validID reports whether s can be stored as an identifier: 1 to 255 bytes of
// valid UTF-8 without control characters.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validPriceID is validID without commas (the SQL store joins a subscription's
// prices with commas).
func validPriceID(s string) bool { return validID(s) && !strings.Contains(s, ",") }

// validUser is what a user ID must be: Checkout, and the user a checkout session
// names.
func validUser(s string) bool { return validID(s) }

// maxUnix is the last second of the year 9999: event and invoice times beyond it
// (or before 1970) are malformed, as no database keeps them alike.
const maxUnix = 253402300799

func validUnix(t int64) bool { return t >= 0 && t <= maxUnix }
