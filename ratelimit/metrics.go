package ratelimit

import "github.com/prometheus/client_golang/prometheus"

// Decision results, indices of resultNames, the "result" label of
// tollgate_ratelimit_decisions_total.
const (
	resultAllowed = iota
	resultLimited
	resultStoreError
)

var resultNames = [...]string{
	resultAllowed:    "allowed",
	resultLimited:    "limited",
	resultStoreError: "store_error",
}

// Bucket kinds, indices of kindNames, the "kind" label of the decisions metric.
const (
	kindKey = iota
	kindIP
)

var kindNames = [...]string{kindKey: "key", kindIP: "ip"}

// counters are a policy's decision counters, by kind and result.
type counters [len(kindNames)][len(resultNames)]prometheus.Counter

// Store error outcomes, the "outcome" label of tollgate_ratelimit_store_errors_total.
const (
	outcomeAllowed  = "allowed"
	outcomeRejected = "rejected"
)

// metrics are a Limiter's Prometheus series. Labels hold plan names and fixed
// words, never key material.
type metrics struct {
	decisions    *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	localDenials prometheus.Counter
	denyEntries  prometheus.GaugeFunc
}

func newMetrics(deny *denyCache) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_decisions_total",
			Help: "Burst limit decisions by bucket kind (key, ip), plan and result (allowed, limited, store_error).",
		}, []string{"kind", "plan", "result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_store_errors_total",
			Help: "Limiter store errors by what the request got: allowed (fail-open) or rejected (fail-closed, 503).",
		}, []string{"outcome"}),
		localDenials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_local_denials_total",
			Help: "Requests refused from the local deny cache without asking the store.",
		}),
		denyEntries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_ratelimit_deny_cache_entries",
			Help: "Exhausted buckets held in the local deny cache.",
		}, func() float64 { return float64(deny.len()) }),
	}
	// Both outcomes exist from the start, so an alert can compare them with zero.
	m.storeErrors.WithLabelValues(outcomeAllowed)
	m.storeErrors.WithLabelValues(outcomeRejected)
	return m
}

// register creates p's decision counters.
func (m *metrics) register(p *policy) {
	for kind, kn := range kindNames {
		for result, rn := range resultNames {
			p.counters[kind][result] = m.decisions.WithLabelValues(kn, p.name, rn)
		}
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.decisions, m.storeErrors, m.localDenials, m.denyEntries}
}

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range l.metrics.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l.metrics.collectors() {
		c.Collect(ch)
	}
}

var _ prometheus.Collector = (*Limiter)(nil)
