// Package usage holds what entitlement's ledger stores share.
package usage

import (
	"fmt"
	"sort"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
)

// Merge validates recs and returns them with buckets truncated to the UTC minute,
// records of the same key and minute added up and records of zero calls dropped,
// ordered by key then bucket (so that stores lock rows in one order).
func Merge(recs []entitlement.UsageRecord) ([]entitlement.UsageRecord, error) {
	type id struct {
		key    string
		bucket int64
	}
	index := make(map[id]int, len(recs))
	out := make([]entitlement.UsageRecord, 0, len(recs))
	for _, r := range recs {
		switch {
		case r.KeyID == "" || r.UserID == "":
			return nil, fmt.Errorf("%w: a record needs a key ID and a user ID", entitlement.ErrInvalidUsage)
		case r.Calls < 0:
			return nil, fmt.Errorf("%w: key %s has %d calls", entitlement.ErrInvalidUsage, r.KeyID, r.Calls)
		case r.Calls == 0:
			continue
		}
		r.Bucket = r.Bucket.UTC().Truncate(time.Minute)
		k := id{r.KeyID, r.Bucket.Unix()}
		if i, ok := index[k]; ok {
			out[i].Calls += r.Calls
			continue
		}
		index[k] = len(out)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].KeyID != out[j].KeyID {
			return out[i].KeyID < out[j].KeyID
		}
		return out[i].Bucket.Before(out[j].Bucket)
	})
	return out, nil
}

// CheckClaim validates a claim before a store applies it: r pending, unbilled or
// abandoned with an identifier, and r.Calls the sum of the parts' unclaimed calls.
func CheckClaim(r entitlement.MeterReport, parts []entitlement.UnreportedUsage) error {
	if r.Identifier == "" || r.KeyID == "" || r.UserID == "" || len(parts) == 0 {
		return fmt.Errorf("%w: a claim needs an identifier, a key, a user and parts", entitlement.ErrInvalidUsage)
	}
	switch r.Status {
	case entitlement.ReportPending, entitlement.ReportUnbilled, entitlement.ReportAbandoned:
	default:
		return fmt.Errorf("%w: a claim cannot be %q", entitlement.ErrInvalidUsage, r.Status)
	}
	var sum int64
	for _, p := range parts {
		if p.KeyID != r.KeyID || p.Claimed < 0 || p.Calls <= p.Claimed {
			return fmt.Errorf("%w: part %s@%s does not belong to the claim", entitlement.ErrInvalidUsage, p.KeyID, p.Bucket)
		}
		sum += p.Calls - p.Claimed
	}
	if sum != r.Calls {
		return fmt.Errorf("%w: the claim has %d calls, its parts %d", entitlement.ErrInvalidUsage, r.Calls, sum)
	}
	return nil
}
