// Package metrics owns the daemon's Prometheus metrics, served through
// github.com/prometheus/client_golang: per session (label session="NAME")
// gauges and counters read from the session reports at each scrape,
// histograms of batch apply time and change-to-secondary lag observed as
// batches are applied, and the standard process and Go runtime collectors.
//
// Counters (…_total) count since the session's worker last started; a
// restart resets them, which Prometheus' rate() treats as a counter reset.
package metrics

import (
	"net/http"

	"github.com/georep/georep/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// States are the worker states georep_worker_state has a sample for.
var States = []string{status.Created, status.Initializing, status.Active, status.Passive, status.Paused, status.Stopped, status.Faulty, status.Fenced}

type family struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(r *status.Report) float64
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func fam(name string, typ prometheus.ValueType, help string, value func(r *status.Report) float64) family {
	return family{desc: prometheus.NewDesc(name, help, []string{"session"}, nil), typ: typ, value: value}
}

const (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue
)

var families = []family{
	fam("georep_lag_seconds", gauge, "Age of the oldest change not yet on the secondary (0 when nothing is pending).",
		func(r *status.Report) float64 { return r.LagSeconds }),
	fam("georep_pending_entries", gauge, "Entry operations of the batch in progress.",
		func(r *status.Report) float64 { return float64(r.Entry) }),
	fam("georep_pending_data", gauge, "Files whose data the batch in progress sends.",
		func(r *status.Report) float64 { return float64(r.Data) }),
	fam("georep_pending_meta", gauge, "Metadata updates of the batch in progress.",
		func(r *status.Report) float64 { return float64(r.Meta) }),
	fam("georep_pending_changelogs", gauge, "Closed changelogs not yet applied.",
		func(r *status.Report) float64 { return float64(r.PendingChangelogs) }),
	fam("georep_remaining_entries", gauge, "Entry operations left in the crawl or batch being applied.",
		func(r *status.Report) float64 { return float64(r.RemainingEntries) }),
	fam("georep_remaining_files", gauge, "Files whose content is left to send in the crawl or batch being applied.",
		func(r *status.Report) float64 { return float64(r.RemainingFiles) }),
	fam("georep_remaining_bytes", gauge, "Bytes of those files.",
		func(r *status.Report) float64 { return float64(r.RemainingBytes) }),
	fam("georep_eta_seconds", gauge, "Time the remaining bytes take at the recent rate (0 when idle or not yet known).",
		func(r *status.Report) float64 { return r.ETASeconds }),
	fam("georep_synced_files_total", counter, "Files whose data was sent since the worker started.",
		func(r *status.Report) float64 { return float64(r.FilesSynced) }),
	fam("georep_synced_bytes_total", counter, "File data bytes sent since the worker started.",
		func(r *status.Report) float64 { return float64(r.BytesSynced) }),
	fam("georep_synced_entries_total", counter, "Entry operations applied since the worker started.",
		func(r *status.Report) float64 { return float64(r.EntriesSynced) }),
	fam("georep_batches_total", counter, "Batches applied since the worker started.",
		func(r *status.Report) float64 { return float64(r.Batches) }),
	fam("georep_failures", gauge, "Entries that could not be synced (georep failures NAME lists them).",
		func(r *status.Report) float64 { return float64(r.Failures) }),
	fam("georep_journal_events_total", counter, "Filesystem events the change journal read since the worker started.",
		func(r *status.Report) float64 { return float64(r.JournalEvents) }),
	fam("georep_journal_overflows_total", counter, "Change journal queue overflows (each costs a crawl) since the worker started.",
		func(r *status.Report) float64 { return float64(r.JournalOverflows) }),
	fam("georep_last_synced_timestamp_seconds", gauge, "The stime: the secondary holds everything the primary had at this Unix time (0 = never synced).",
		func(r *status.Report) float64 { return float64(r.StimeNS) / 1e9 }),
	fam("georep_checkpoint_completed", gauge, "1 once the stime passed the set checkpoint, 0 before or when none is set.",
		func(r *status.Report) float64 { return b2f(r.CheckpointTime != nil && r.CheckpointCompleted) }),
	fam("georep_checkpoint_timestamp_seconds", gauge, "The set checkpoint as a Unix time (0 = none).",
		func(r *status.Report) float64 {
			if r.CheckpointTime == nil {
				return 0
			}
			return float64(r.CheckpointTime.UnixNano()) / 1e9
		}),
	fam("georep_worker_restarts_total", counter, "Restarts of the session's worker by the daemon's monitor.",
		func(r *status.Report) float64 { return float64(r.WorkerRestarts) }),
}

var (
	sessionsDesc = prometheus.NewDesc("georep_sessions", "Sessions known to the daemon.", nil, nil)
	stateDesc    = prometheus.NewDesc("georep_worker_state", "1 for the session's current worker state, 0 for the others.", []string{"session", "state"}, nil)
	crawlsDesc   = prometheus.NewDesc("georep_crawls_total", "Crawls of the primary tree since the worker started, by reason.", []string{"session", "reason"}, nil)
)

// reportCollector turns the session reports into samples at each scrape.
type reportCollector struct {
	reports func() []status.Report
}

func (c reportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- stateDesc
	ch <- crawlsDesc
	for _, f := range families {
		ch <- f.desc
	}
}

func (c reportCollector) Collect(ch chan<- prometheus.Metric) {
	reports := c.reports()
	ch <- prometheus.MustNewConstMetric(sessionsDesc, gauge, float64(len(reports)))
	for i := range reports {
		r := &reports[i]
		for _, f := range families {
			ch <- prometheus.MustNewConstMetric(f.desc, f.typ, f.value(r), r.Session)
		}
		for _, s := range States {
			ch <- prometheus.MustNewConstMetric(stateDesc, gauge, b2f(r.Status == s), r.Session, s)
		}
		for _, reason := range status.CrawlReasonList {
			ch <- prometheus.MustNewConstMetric(crawlsDesc, counter, float64(r.CrawlReasons[reason]), r.Session, reason)
		}
	}
}

// Metrics is the daemon's registry.
type Metrics struct {
	reg      *prometheus.Registry
	applyDur *prometheus.HistogramVec
	lag      *prometheus.HistogramVec
}

// New builds the registry: the reports' metrics, the histograms, and the
// process and Go runtime collectors.
func New(reports func() []status.Report) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		applyDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "georep_batch_apply_seconds",
			Help:    "Time to apply a batch or a crawl to the secondary: entries, data, metadata and the stime.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5 ms .. ~5 min
		}, []string{"session"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "georep_change_lag_seconds",
			Help:    "Time from the oldest change of an applied batch to the moment the secondary held it (its stime recorded).",
			Buckets: prometheus.ExponentialBuckets(0.025, 2, 14), // 25 ms .. ~3.4 min
		}, []string{"session"}),
	}
	m.reg.MustRegister(reportCollector{reports: reports}, m.applyDur, m.lag,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return m
}

// ObserveBatch records one applied batch (or crawl) of a session: how long
// it took, and the lag of its oldest change once it was on the secondary
// (negative: unknown, not observed).
func (m *Metrics) ObserveBatch(session string, applySeconds, lagSeconds float64) {
	if applySeconds >= 0 {
		m.applyDur.WithLabelValues(session).Observe(applySeconds)
	}
	if lagSeconds >= 0 {
		m.lag.WithLabelValues(session).Observe(lagSeconds)
	}
}

// Forget drops a deleted session's histograms.
func (m *Metrics) Forget(session string) {
	m.applyDur.DeleteLabelValues(session)
	m.lag.DeleteLabelValues(session)
}

// Registry exposes the registry (for tests and further collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
