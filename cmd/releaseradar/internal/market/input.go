package market

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text that may reach the database. PostgreSQL refuses a string that is not UTF-8
// or holds a NUL byte (invalid byte sequence for encoding "UTF8"), while SQLite
// takes both and its functions cut the string at the NUL (a LIKE pattern "%\x00%"
// matches everything): so every text input is checked here first, and both
// databases give the same answer, a 400 naming the parameter.

// textReason is the reason of an *InputError for text that is not UTF-8 without NUL.
const textReason = "must be UTF-8 text without NUL bytes"

// maxParamName is the longest query parameter name an *InputError names; a longer
// one is reported as a malformed query string.
const maxParamName = 64

// validText reports whether s is UTF-8 text without NUL bytes.
func validText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// checkText returns an *InputError naming param unless every s is valid text.
func checkText(param string, ss ...string) error {
	for _, s := range ss {
		if !validText(s) {
			return paramError(param, textReason)
		}
	}
	return nil
}

// paramError is badParam for a query parameter, whose name is the client's: one
// that is empty ("=x") or holds a character that does not print is not quoted in
// the detail, which names the query string instead.
func paramError(name, reason string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return errQueryForm
	}
	return badParam(name, reason)
}

func badQueryString(reason string) error {
	return &InputError{Param: "query string", Reason: reason, where: "request"}
}

var (
	errQueryTooLong = badQueryString(fmt.Sprintf("must be at most %d bytes", maxRawQuery))
	errQueryForm    = badQueryString("must be name=value pairs of URL-encoded UTF-8 text without NUL bytes, separated by &")
)

// ParseValues decodes a raw query string (http.Request.URL.RawQuery) for
// ParseQuery. Unlike url.ParseQuery, which silently drops the pairs it cannot
// decode, it refuses the whole query with an *InputError: a query longer than 4096
// bytes, a pair with a malformed %-escape or a ';', and a name or value that is not
// UTF-8 text without NUL bytes. The error names the parameter when its name is
// readable.
func ParseValues(raw string) (url.Values, error) {
	if len(raw) > maxRawQuery {
		return nil, errQueryTooLong
	}
	v := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil || !validText(name) || len(name) > maxParamName || strings.Contains(rawName, ";") {
			return nil, errQueryForm
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil || strings.Contains(rawValue, ";") {
			return nil, paramError(name, "must be URL-encoded, each % followed by two hex digits, with no ';'")
		}
		if err := checkText(name, value); err != nil {
			return nil, err
		}
		v[name] = append(v[name], value)
	}
	return v, nil
}

// checkValues returns an *InputError naming the first parameter of v, by name,
// whose name or one of whose values is not UTF-8 text without NUL bytes.
func checkValues(v url.Values) error {
	for _, name := range slices.Sorted(maps.Keys(v)) {
		if !validText(name) || len(name) > maxParamName {
			return errQueryForm
		}
		if err := checkText(name, v[name]...); err != nil {
			return err
		}
	}
	return nil
}
