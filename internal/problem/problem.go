// Package problem writes RFC 9457 problem details, the error body every tollgate
// middleware answers with.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Details is an RFC 9457 problem document.
type Details struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// Write answers status with an application/problem+json body whose title is the
// status text and whose detail is detail. Headers already set on w are kept.
func Write(w http.ResponseWriter, status int, detail string) {
	body, _ := json.Marshal(Details{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
