// Package metrics renders the daemon's session reports in the Prometheus
// text exposition format (version 0.0.4), written by hand: one family per
// metric with HELP and TYPE lines, samples labelled {session="NAME"}.
//
// Counters (…_total) count since the session's worker last started; a
// restart resets them, which Prometheus' rate() treats as a counter reset.
package metrics

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/status"
)

// ContentType is the exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// States are the worker states georep_worker_state has a sample for.
var States = []string{status.Created, status.Initializing, status.Active, status.Passive, status.Paused, status.Stopped, status.Faulty, status.Fenced}

type family struct {
	name, typ, help string
	value           func(r *status.Report) float64
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var families = []family{
	{"georep_lag_seconds", "gauge", "Age of the oldest change not yet on the secondary (0 when nothing is pending).",
		func(r *status.Report) float64 { return r.LagSeconds }},
	{"georep_pending_entries", "gauge", "Entry operations of the batch in progress.",
		func(r *status.Report) float64 { return float64(r.Entry) }},
	{"georep_pending_data", "gauge", "Files whose data the batch in progress sends.",
		func(r *status.Report) float64 { return float64(r.Data) }},
	{"georep_pending_meta", "gauge", "Metadata updates of the batch in progress.",
		func(r *status.Report) float64 { return float64(r.Meta) }},
	{"georep_pending_changelogs", "gauge", "Closed changelogs not yet applied.",
		func(r *status.Report) float64 { return float64(r.PendingChangelogs) }},
	{"georep_synced_files_total", "counter", "Files whose data was sent since the worker started.",
		func(r *status.Report) float64 { return float64(r.FilesSynced) }},
	{"georep_synced_bytes_total", "counter", "File data bytes sent since the worker started.",
		func(r *status.Report) float64 { return float64(r.BytesSynced) }},
	{"georep_synced_entries_total", "counter", "Entry operations applied since the worker started.",
		func(r *status.Report) float64 { return float64(r.EntriesSynced) }},
	{"georep_batches_total", "counter", "Batches applied since the worker started.",
		func(r *status.Report) float64 { return float64(r.Batches) }},
	{"georep_failures", "gauge", "Entries that could not be synced (georep failures NAME lists them).",
		func(r *status.Report) float64 { return float64(r.Failures) }},
	{"georep_journal_events_total", "counter", "Filesystem events the change journal read since the worker started.",
		func(r *status.Report) float64 { return float64(r.JournalEvents) }},
	{"georep_journal_overflows_total", "counter", "Change journal queue overflows (each costs a crawl) since the worker started.",
		func(r *status.Report) float64 { return float64(r.JournalOverflows) }},
	{"georep_crawls_total", "counter", "Crawls of the primary tree since the worker started.",
		func(r *status.Report) float64 { return float64(r.Crawls) }},
	{"georep_last_synced_timestamp_seconds", "gauge", "The stime: the secondary holds everything the primary had at this Unix time (0 = never synced).",
		func(r *status.Report) float64 { return float64(r.StimeNS) / 1e9 }},
	{"georep_checkpoint_completed", "gauge", "1 once the stime passed the set checkpoint, 0 before or when none is set.",
		func(r *status.Report) float64 { return b2f(r.CheckpointTime != nil && r.CheckpointCompleted) }},
	{"georep_checkpoint_timestamp_seconds", "gauge", "The set checkpoint as a Unix time (0 = none).",
		func(r *status.Report) float64 {
			if r.CheckpointTime == nil {
				return 0
			}
			return float64(r.CheckpointTime.UnixNano()) / 1e9
		}},
	{"georep_worker_restarts_total", "counter", "Restarts of the session's worker by the daemon's monitor.",
		func(r *status.Report) float64 { return float64(r.WorkerRestarts) }},
}

// Write renders the reports.
func Write(w io.Writer, reports []status.Report) error {
	bw := bufio.NewWriter(w)
	header := func(name, typ, help string) {
		bw.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
	}
	header("georep_sessions", "gauge", "Sessions known to the daemon.")
	bw.WriteString("georep_sessions " + formatFloat(float64(len(reports))) + "\n")
	for _, f := range families {
		header(f.name, f.typ, f.help)
		for i := range reports {
			r := &reports[i]
			bw.WriteString(f.name + `{session="` + escapeLabel(r.Session) + `"} ` + formatFloat(f.value(r)) + "\n")
		}
	}
	header("georep_worker_state", "gauge", "1 for the session's current worker state, 0 for the others.")
	for i := range reports {
		r := &reports[i]
		for _, s := range States {
			bw.WriteString(`georep_worker_state{session="` + escapeLabel(r.Session) + `",state="` + s + `"} ` + formatFloat(b2f(r.Status == s)) + "\n")
		}
	}
	return bw.Flush()
}

// Handler serves /metrics from a source of reports.
func Handler(reports func() []status.Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		Write(w, reports())
	})
}

func formatFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	if math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64) // 225464795, 1795600241.624
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
