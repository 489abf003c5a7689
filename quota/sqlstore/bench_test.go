package sqlstore_test

import (
	"testing"

	"github.com/releaseradar/tollgate/quota/storetest"
)

// BenchmarkConsume measures Consume on the shared api_keys table (the default
// deployment) and on a dedicated quotas table, on both databases.
func BenchmarkConsume(b *testing.B) {
	for _, be := range backends {
		for _, l := range layouts {
			b.Run(be.name+"/"+l.name, func(b *testing.B) {
				db := be.open(b)
				l.prepare(b, db)
				storetest.Bench(b, l.wrap(bootstrapped(b, db, l.cfg), db))
			})
		}
	}
}
