package problem_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/releaseradar/tollgate/internal/problem"
)

// A package declares its sentinel with a row of the table; any writer answers it
// the same way, wrapped or not.
func ExampleWriteError() {
	errExceeded := problem.New(problem.QuotaExceeded, "quota: monthly API quota exceeded")
	w := httptest.NewRecorder()
	problem.WriteError(w, fmt.Errorf("key_123: %w", errExceeded))
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	fmt.Print(w.Body.String())
	// Output:
	// 429 application/problem+json
	// {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Monthly API quota exceeded"}
}
