package problem_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/releaseradar/tollgate/internal/problem"
)

func ExampleWrite() {
	w := httptest.NewRecorder()
	problem.Write(w, http.StatusTooManyRequests, "Monthly API quota exceeded")
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	fmt.Print(w.Body.String())
	// Output:
	// 429 application/problem+json
	// {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Monthly API quota exceeded"}
}
