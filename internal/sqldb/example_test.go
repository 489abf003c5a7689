package sqldb_test

import (
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/internal/sqldb"
)

// Times are written as fixed-width UTC text at microsecond precision, which both
// databases accept and SQLite orders correctly as text.
func ExampleT() {
	at := time.Date(2026, 11, 27, 9, 30, 0, 123456789, time.FixedZone("CET", 3600))
	v, _ := sqldb.T(at).Value()
	fmt.Println(v)
	// Output: 2026-11-27 08:30:00.123456+00:00
}
