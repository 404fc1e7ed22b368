// Package status owns what `georep status` shows: one Report per session,
// with stable snake_case JSON names, rendered as a table (Gluster's columns,
// plus LAG) or as JSON. The daemon builds reports from its workers and
// writes each to the session's status.json; without a daemon the CLI reads
// those files back.
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/worker"
)

// Worker statuses, as the STATUS column shows them.
const (
	Created      = "Created"
	Initializing = "Initializing"
	Active       = "Active"
	Passive      = "Passive" // reserved for several hosts per session
	Paused       = "Paused"
	Stopped      = "Stopped"
	Faulty       = "Faulty"
	// Fenced: the secondary was promoted to a primary (georep promote) and
	// refuses this session; LAST ERROR names the promotion and its undo.
	Fenced = "Fenced"
)

// Crawl reasons: Report.LastCrawlReason, the keys of Report.CrawlReasons
// and the reason label of georep_crawls_total. A small fixed set.
const (
	CrawlFirstSync      = "first sync"           // no stime yet
	CrawlJournalDown    = "journal not running"  // the journal started after downtime (or for the first time)
	CrawlOverflow       = "queue overflow"       // the kernel queue overflowed
	CrawlSizeLimit      = "size limit"           // changelogs dropped before the session applied them
	CrawlNoPosition     = "no journal position"  // first read of this journal's changelogs
	CrawlUnreadable     = "unreadable changelog" // a corrupt changelog
	CrawlJournalFailure = "journal failure"      // changelog writes failed, unparsable events
	CrawlMissingParent  = "missing parent"       // an entry whose parent the secondary lacks
	CrawlNoJournal      = "no journal"           // periodic crawls without fanotify
	CrawlResync         = "resync"               // georep resync of the whole tree
	CrawlOptionsWidened = "options widened"      // sync-xattrs or sync-acls set back to true: every file's metadata again
)

// CrawlReasonList lists every crawl reason, in a stable order.
var CrawlReasonList = []string{CrawlFirstSync, CrawlJournalDown, CrawlOverflow, CrawlSizeLimit, CrawlNoPosition,
	CrawlUnreadable, CrawlJournalFailure, CrawlMissingParent, CrawlNoJournal, CrawlResync, CrawlOptionsWidened}

// Report is one session's status. The JSON names are stable.
type Report struct {
	Session   string `json:"session"`
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
	// Status is Created, Initializing, Active, Passive, Paused, Stopped,
	// Faulty or Fenced.
	Status string `json:"status"`
	// CrawlStatus is "Hybrid Crawl" (crawling the tree), "Changelog Crawl"
	// (following the journal) or "" (not running).
	CrawlStatus string `json:"crawl_status"`
	// LastSynced is the stime: the secondary holds everything the primary
	// had then. StimeNS is the same in ns since the epoch (0 = never).
	LastSynced *time.Time `json:"last_synced"`
	StimeNS    int64      `json:"stime_ns"`
	// LagSeconds is the age of the oldest change not yet on the secondary
	// (0 when nothing is pending).
	LagSeconds float64 `json:"lag_seconds"`
	// Entry, Data and Meta are the operations of the batch in progress.
	Entry    int `json:"entry"`
	Data     int `json:"data"`
	Meta     int `json:"meta"`
	Failures int `json:"failures"`
	// Remaining work of the crawl or batch being applied (Gluster's files
	// and bytes remaining): entry operations, files whose content is still
	// to send and their bytes; the recent transfer rate and the ETA it
	// gives (0 when idle or not yet known).
	RemainingEntries int     `json:"remaining_entries"`
	RemainingFiles   int     `json:"remaining_files"`
	RemainingBytes   int64   `json:"remaining_bytes"`
	RateBytes        float64 `json:"rate_bytes_per_second"`
	ETASeconds       float64 `json:"eta_seconds"`
	// Counters since the worker (re)started.
	FilesSynced       int64  `json:"files_synced"`
	BytesSynced       int64  `json:"bytes_synced"`
	EntriesSynced     int64  `json:"entries_synced"`
	Batches           int64  `json:"batches"`
	Crawls            int64  `json:"crawls"`
	PendingChangelogs int    `json:"pending_changelogs"`
	Journal           string `json:"journal"`
	JournalEvents     uint64 `json:"journal_events"`
	JournalOverflows  uint64 `json:"journal_overflows"`
	// Compression is what the data transfer's compression chose for most
	// of the data and why (e.g. "zstd:3 (link-bound)"); CompressionRatio
	// the data's size over its size on the wire (1 = not compressed).
	Compression      string  `json:"compression"`
	CompressionRatio float64 `json:"compression_ratio"`
	// JournalDir is the changelog dir the session reads; JournalSince is
	// when the journal's unbroken coverage of the tree began.
	JournalDir   string     `json:"journal_dir,omitempty"`
	JournalSince *time.Time `json:"journal_since,omitempty"`
	// LastCrawlReason says why the last crawl happened; CrawlReasons counts
	// this worker's crawls by reason (georep_crawls_total{reason}).
	LastCrawlReason string           `json:"last_crawl_reason,omitempty"`
	CrawlReasons    map[string]int64 `json:"crawl_reasons,omitempty"`
	// Checkpoint: the set time, whether the stime passed it, and when the
	// daemon noticed (null when it completed while no daemon watched).
	CheckpointTime           *time.Time `json:"checkpoint_time"`
	CheckpointCompleted      bool       `json:"checkpoint_completed"`
	CheckpointCompletionTime *time.Time `json:"checkpoint_completion_time"`
	// LastError is the error that made the worker Faulty; it is kept (with
	// its time) after the worker recovered.
	LastError     string     `json:"last_error"`
	LastErrorTime *time.Time `json:"last_error_time"`
	// WorkerRestarts counts the monitor's restarts of the worker.
	WorkerRestarts int `json:"worker_restarts"`
	// Live is true for a report from the running daemon, false for one read
	// from the state directory.
	Live    bool       `json:"live"`
	Updated *time.Time `json:"updated"`
}

// TimePtr returns &t, or nil for the zero time.
func TimePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// UpdateCheckpoint brings the checkpoint fields in line with the configured
// checkpoint cp (zero: none) and the report's stime; now is the moment the
// completion is noticed. It reports whether the checkpoint completed just now.
func (r *Report) UpdateCheckpoint(cp, now time.Time) bool {
	if cp.IsZero() {
		r.CheckpointTime, r.CheckpointCompleted, r.CheckpointCompletionTime = nil, false, nil
		return false
	}
	if r.CheckpointTime == nil || !r.CheckpointTime.Equal(cp) {
		r.CheckpointTime, r.CheckpointCompleted, r.CheckpointCompletionTime = TimePtr(cp), false, nil
	}
	if !r.CheckpointCompleted && r.StimeNS > 0 && r.StimeNS >= cp.UnixNano() {
		r.CheckpointCompleted = true
		if !now.IsZero() {
			r.CheckpointCompletionTime = TimePtr(now)
		}
		return true
	}
	return false
}

// Offline builds a session's report from the state directory (no daemon
// answers): its config, stime, failures and the daemon's last status.json.
// A session meant to run shows Stopped, since nothing runs it.
func Offline(st session.Store, e session.Entry) Report {
	r := Report{Session: e.Name}
	_ = state.ReadJSON(st.StatusPath(e.Name), &r)
	r.Session, r.Live = e.Name, false
	if e.Err != nil {
		r.Status, r.LastError = Faulty, "config: "+e.Err.Error()
		return r
	}
	s := e.Session
	r.Primary, r.Secondary = s.Primary, s.Secondary
	if ns, err := state.ReadStime(st.StimePath(e.Name)); err == nil && ns > 0 {
		r.StimeNS, r.LastSynced = ns, TimePtr(time.Unix(0, ns))
	}
	var failures []worker.Failure
	if state.ReadJSON(st.FailuresPath(e.Name), &failures) == nil {
		r.Failures = len(failures)
	}
	switch s.State {
	case session.Created:
		r.Status = Created
	default:
		r.Status = Stopped
	}
	r.CrawlStatus, r.Entry, r.Data, r.Meta, r.LagSeconds = "", 0, 0, 0, 0
	r.RemainingEntries, r.RemainingFiles, r.RemainingBytes, r.RateBytes, r.ETASeconds = 0, 0, 0, 0, 0
	r.UpdateCheckpoint(s.Checkpoint, time.Time{})
	return r
}

// Running reports whether the status is one of a running worker.
func Running(s string) bool { return s == Active || s == Paused || s == Passive || s == Initializing }

// FormatTime renders a time as the table shows it (local time).
func FormatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "N/A"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// FormatLag renders a lag in seconds ("0s", "12s", "3m4s", "2h5m").
func FormatLag(sec float64) string {
	if sec < 0 || math.IsNaN(sec) {
		sec = 0
	}
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// HumanBytes renders a byte count (KiB, MiB, ...).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// WriteTable renders reports as `georep status` does; detail adds the
// synced counters, the checkpoint and the last error.
func WriteTable(w io.Writer, reports []Report, detail bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	head := []string{"SESSION", "PRIMARY", "SECONDARY", "STATUS", "CRAWL STATUS", "LAST SYNCED", "LAG", "ENTRY", "DATA", "META", "FAILURES",
		"REMAINING", "ETA"}
	if detail {
		head = append(head, "FILES SYNCED", "BYTES SYNCED", "ENTRIES REMAINING", "FILES REMAINING", "BYTES REMAINING", "RATE", "COMPRESSION",
			"CHECKPOINT TIME", "CHECKPOINT COMPLETED", "CHECKPOINT COMPLETION TIME", "LAST ERROR", "JOURNAL", "JOURNAL SINCE", "LAST CRAWL")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range reports {
		na := func(s string) string {
			if !Running(r.Status) || s == "" {
				return "N/A"
			}
			return s
		}
		crawl, lag := na(r.CrawlStatus), na(FormatLag(r.LagSeconds))
		entry, data, meta := na(fmt.Sprint(r.Entry)), na(fmt.Sprint(r.Data)), na(fmt.Sprint(r.Meta))
		row := []string{r.Session, r.Primary, r.Secondary, r.Status, crawl, FormatTime(r.LastSynced), lag, entry, data, meta, fmt.Sprint(r.Failures),
			na(FormatRemaining(r)), na(FormatETA(r))}
		if detail {
			completed := "N/A"
			if r.CheckpointTime != nil {
				completed = "No"
				if r.CheckpointCompleted {
					completed = "Yes"
				}
			}
			lastErr := "N/A"
			if r.LastError != "" {
				lastErr = oneLine(r.LastError, 200)
				if r.LastErrorTime != nil {
					lastErr = FormatTime(r.LastErrorTime) + ": " + lastErr
				}
			}
			rate := "N/A"
			if Running(r.Status) && r.RateBytes > 0 {
				rate = HumanBytes(int64(r.RateBytes)) + "/s"
			}
			comp := "N/A"
			if r.Compression != "" {
				comp = fmt.Sprintf("%s %.2fx", r.Compression, r.CompressionRatio)
			}
			row = append(row, fmt.Sprint(r.FilesSynced), HumanBytes(r.BytesSynced),
				na(fmt.Sprint(r.RemainingEntries)), na(fmt.Sprint(r.RemainingFiles)), na(HumanBytes(r.RemainingBytes)), rate, comp,
				FormatTime(r.CheckpointTime), completed,
				FormatTime(r.CheckpointCompletionTime), lastErr, na(r.Journal), FormatTime(r.JournalSince), na(r.LastCrawlReason))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// FormatRemaining renders the remaining work as the table's REMAINING
// column shows it: "0" when nothing is left, else what is ("12 entries,
// 340 files (1.2 GiB)").
func FormatRemaining(r Report) string {
	var parts []string
	if r.RemainingEntries > 0 {
		parts = append(parts, fmt.Sprintf("%d entries", r.RemainingEntries))
	}
	if r.RemainingFiles > 0 || r.RemainingBytes > 0 {
		parts = append(parts, fmt.Sprintf("%d files (%s)", r.RemainingFiles, HumanBytes(r.RemainingBytes)))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// FormatETA renders the ETA column: "-" while files remain but no rate is
// known yet, "0s" when nothing is left.
func FormatETA(r Report) string {
	switch {
	case r.ETASeconds > 0:
		return FormatLag(r.ETASeconds)
	case r.RemainingFiles > 0 || r.RemainingBytes > 0 || r.RemainingEntries > 0:
		return "-"
	}
	return "0s"
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// WriteJSON renders reports as a JSON array.
func WriteJSON(w io.Writer, reports []Report) error {
	if reports == nil {
		reports = []Report{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(reports)
}

// Save writes a report to the session's status.json, atomically.
func Save(st session.Store, r Report) error {
	if _, err := os.Stat(st.Dir(r.Session)); err != nil {
		return err // deleted meanwhile: do not re-create it
	}
	return state.WriteJSON(st.StatusPath(r.Session), r)
}

// ETA is how long remaining bytes take at rate bytes per second (0 when
// either is not positive).
func ETA(remaining int64, rate float64) time.Duration {
	if remaining <= 0 || rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return 0
	}
	sec := float64(remaining) / rate
	if sec > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(sec * float64(time.Second))
}

// RateWindow is a transfer rate over the last RateWindowSpan: samples of
// a growing byte count, the oldest dropped as new ones come. The zero
// value is empty.
type RateWindow struct {
	at    []time.Time
	bytes []int64
}

// RateWindowSpan is how far back a RateWindow looks.
const RateWindowSpan = 10 * time.Second

// Add records the byte count done at t (counts never go down within one
// transfer; a smaller one starts the window again).
func (w *RateWindow) Add(t time.Time, done int64) {
	if n := len(w.bytes); n > 0 && done < w.bytes[n-1] {
		w.at, w.bytes = w.at[:0], w.bytes[:0]
	}
	w.at = append(w.at, t)
	w.bytes = append(w.bytes, done)
	drop := 0
	for drop < len(w.at)-2 && t.Sub(w.at[drop+1]) >= RateWindowSpan {
		drop++
	}
	if drop > 0 {
		w.at = append(w.at[:0], w.at[drop:]...)
		w.bytes = append(w.bytes[:0], w.bytes[drop:]...)
	}
}

// Rate is bytes per second between the oldest and the newest sample (0
// with fewer than two samples).
func (w *RateWindow) Rate() float64 {
	n := len(w.at)
	if n < 2 {
		return 0
	}
	d := w.at[n-1].Sub(w.at[0]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(w.bytes[n-1]-w.bytes[0]) / d
}
