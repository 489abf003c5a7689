package keyprep_test

import (
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/apikey/internal/keyprep"
)

func ExampleT() {
	t := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	fmt.Println(keyprep.T(t))
	// Output: 2026-11-27 09:00:00.123456 +0000 UTC
}
