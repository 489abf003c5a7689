package openapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// QuickstartPath is where the quickstart lives, from the repository's root.
const QuickstartPath = "docs/QUICKSTART.md"

// operation is one operation of the document, for the quickstart.
type operation struct {
	method, path string
	item         *openapi3.PathItem
	op           *openapi3.Operation
}

// Quickstart returns the text of docs/QUICKSTART.md made from doc: for every
// operation but HEAD ones, by tag in the document's order of tags and then in the
// document's order of paths, a curl command built from the operation's examples
// (path and query parameters, headers, the JSON body) and its credentials, and
// the statuses it answers.
func Quickstart(doc *openapi3.T) ([]byte, error) {
	byTag := map[string][]operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if method == http.MethodHead {
				continue
			}
			if len(op.Tags) == 0 {
				return nil, fmt.Errorf("openapi: quickstart: %s %s has no tag", method, path)
			}
			byTag[op.Tags[0]] = append(byTag[op.Tags[0]], operation{method, path, item, op})
		}
	}
	var b bytes.Buffer
	b.WriteString(quickstartHead)
	for _, tag := range doc.Tags {
		ops := byTag[tag.Name]
		delete(byTag, tag.Name)
		if len(ops) == 0 {
			continue
		}
		slices.SortFunc(ops, func(x, y operation) int {
			return cmp.Or(cmp.Compare(line(x.item), line(y.item)), strings.Compare(x.path, y.path),
				cmp.Compare(methodRank(x.method), methodRank(y.method)))
		})
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", tag.Name, oneLine(tag.Description))
		for _, o := range ops {
			if err := writeOperation(&b, doc, o); err != nil {
				return nil, err
			}
		}
	}
	if len(byTag) > 0 {
		return nil, fmt.Errorf("openapi: quickstart: operations tagged with tags the document does not list: %v", byTag)
	}
	return b.Bytes(), nil
}

const quickstartHead = `<!-- Generated from cmd/releaseradar/internal/openapi/openapi.yaml by
     go generate ./cmd/releaseradar/internal/openapi — do not edit by hand. -->

# ReleaseRadar API quickstart

One curl command per route of the server's OpenAPI document (served at
` + "`GET /openapi.json`" + `, written in
[openapi.yaml](../cmd/releaseradar/internal/openapi/openapi.yaml)). [API.md](API.md)
says the same in prose: plans, limits, headers and every setting.

Start the server, then get an API key (for the data routes) and a dashboard token
(for ` + "`/keys`" + ` and ` + "`/billing`" + `):

` + "```sh" + `
go run ./cmd/releaseradar &
export RR=http://127.0.0.1:8501
export RR_KEY=$(go run ./cmd/releaseradar admin grant --user me --plan team)
export RR_TOKEN=$(go run ./cmd/releaseradar admin token --user me)
` + "```" + `

Gated answers carry ` + "`X-Quota-Limit`, `X-Quota-Remaining`, `X-Quota-Reset`" + ` and
` + "`X-RateLimit-*`, `RateLimit-Policy`, `RateLimit`" + ` (hence ` + "`-i`" + `); every 429 and 503
carries ` + "`Retry-After`" + `; every error is ` + "`application/problem+json`" + ` with a
` + "`detail`" + ` sentence.
`

func writeOperation(b *bytes.Buffer, doc *openapi3.T, o operation) error {
	fmt.Fprintf(b, "\n### `%s %s` — %s\n\n", o.method, o.path, o.op.Summary)
	if d := firstParagraph(o.op.Description); d != "" {
		fmt.Fprintf(b, "%s\n\n", d)
	}
	cmd, err := curl(doc, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "```sh\n%s\n```\n\n", cmd)
	codes := o.op.Responses.Map()
	statuses := make([]string, 0, len(codes))
	for code := range codes {
		statuses = append(statuses, code)
	}
	slices.Sort(statuses)
	var ok, errs []string
	for _, code := range statuses {
		if code >= "400" {
			errs = append(errs, "`"+code+"`")
			continue
		}
		desc := ""
		if r := codes[code].Value; r != nil && r.Description != nil {
			desc = " " + strings.TrimSuffix(firstSentence(*r.Description), ".")
		}
		ok = append(ok, "`"+code+"`"+desc)
	}
	b.WriteString("Answers: " + strings.Join(ok, " · "))
	if len(errs) > 0 {
		b.WriteString(" · refusals (problem+json) " + strings.Join(errs, " "))
	}
	b.WriteString("\n")
	return nil
}

// curl returns the command that calls o with the document's examples.
func curl(doc *openapi3.T, o operation) (string, error) {
	args := []string{"curl", "-i"}
	path := o.path
	var query []string
	var headers []string
	params := append(slices.Clone(o.item.Parameters), o.op.Parameters...)
	for _, ref := range params {
		p := ref.Value
		ex, ok := example(p)
		switch p.In {
		case openapi3.ParameterInPath:
			if !ok {
				return "", fmt.Errorf("openapi: quickstart: %s %s: path parameter %q has no example", o.method, o.path, p.Name)
			}
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(ex))
		case openapi3.ParameterInQuery:
			if !ok && p.Required {
				return "", fmt.Errorf("openapi: quickstart: %s %s: required query parameter %q has no example", o.method, o.path, p.Name)
			}
			if ok {
				query = append(query, url.QueryEscape(p.Name)+"="+queryValue(ex))
			}
		case openapi3.ParameterInHeader:
			if ok && p.Required {
				headers = append(headers, shellQuote(p.Name+": "+ex))
			}
		}
	}
	target := "$RR" + path
	if len(query) > 0 {
		target += "?" + strings.Join(query, "&")
	}
	args = append(args, `"`+target+`"`)
	security := doc.Security
	if o.op.Security != nil {
		security = *o.op.Security
	}
	if len(security) > 0 {
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for n := range security[0] {
				if !yield(n) {
					return
				}
			}
		}) {
			ref := doc.Components.SecuritySchemes[name]
			if ref == nil || ref.Value == nil {
				return "", fmt.Errorf("openapi: quickstart: no security scheme %q", name)
			}
			s := ref.Value
			switch {
			case s.Type == "apiKey" && s.In == "header":
				args = append(args, "-H", `"`+s.Name+`: $RR_KEY"`)
			case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
				args = append(args, "-H", `"Authorization: Bearer $RR_TOKEN"`)
			case s.Type == "apiKey" && s.In == "cookie":
				args = append(args, "-b", `"`+s.Name+`=$RR_TOKEN"`)
			}
		}
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	body, hasBody, err := jsonExample(o)
	if err != nil {
		return "", err
	}
	switch {
	case hasBody:
		args = append(args, "-H", `"Content-Type: application/json"`, "-d", shellQuote(body))
	case o.method != http.MethodGet:
		args = append(args, "-X", o.method)
	}
	return strings.Join(args, " "), nil
}

// example returns p's example as text: the parameter's own, else its schema's.
func example(p *openapi3.Parameter) (string, bool) {
	ex := p.Example
	if ex == nil && p.Schema != nil && p.Schema.Value != nil {
		ex = p.Schema.Value.Example
	}
	if ex == nil {
		return "", false
	}
	switch v := ex.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	default:
		return fmt.Sprint(v), true
	}
}

// jsonExample returns the example of o's JSON request body, compact.
func jsonExample(o operation) (string, bool, error) {
	if o.op.RequestBody == nil || o.op.RequestBody.Value == nil {
		return "", false, nil
	}
	mt := o.op.RequestBody.Value.Content.Get("application/json")
	if mt == nil {
		return "", false, nil
	}
	ex := mt.Example
	if ex == nil && mt.Schema != nil && mt.Schema.Value != nil {
		ex = mt.Schema.Value.Example
	}
	if ex == nil {
		if o.op.RequestBody.Value.Required {
			return "", false, fmt.Errorf("openapi: quickstart: %s %s: the JSON body has no example", o.method, o.path)
		}
		return "", false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ex); err != nil {
		return "", false, fmt.Errorf("openapi: quickstart: %s %s: %w", o.method, o.path, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), true, nil
}

// queryValue escapes a query value, but leaves a shell variable ($NAME) as it is.
func queryValue(s string) string {
	if strings.HasPrefix(s, "$") {
		return s
	}
	return url.QueryEscape(s)
}

// shellQuote quotes s for sh: in single quotes, or in double quotes when it
// holds a variable ($NAME) to expand.
func shellQuote(s string) string {
	if strings.Contains(s, "$") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`").Replace(s) + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// line is where item starts in the document, 0 when not known.
func line(item *openapi3.PathItem) int {
	if item.Origin == nil || item.Origin.Key == nil {
		return 0
	}
	return item.Origin.Key.Line
}

func methodRank(m string) int {
	return slices.Index([]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, m)
}

// oneLine joins the lines of s.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// firstParagraph returns s's first paragraph on one line.
func firstParagraph(s string) string {
	p, _, _ := strings.Cut(strings.TrimSpace(s), "\n\n")
	return oneLine(p)
}

// firstSentence returns s's first sentence on one line.
func firstSentence(s string) string {
	s = oneLine(s)
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
