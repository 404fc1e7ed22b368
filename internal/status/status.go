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
	head := []string{"SESSION", "PRIMARY", "SECONDARY", "STATUS", "CRAWL STATUS", "LAST SYNCED", "LAG", "ENTRY", "DATA", "META", "FAILURES"}
	if detail {
		head = append(head, "FILES SYNCED", "BYTES SYNCED", "CHECKPOINT TIME", "CHECKPOINT COMPLETED", "CHECKPOINT COMPLETION TIME", "LAST ERROR")
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
		row := []string{r.Session, r.Primary, r.Secondary, r.Status, crawl, FormatTime(r.LastSynced), lag, entry, data, meta, fmt.Sprint(r.Failures)}
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
			row = append(row, fmt.Sprint(r.FilesSynced), HumanBytes(r.BytesSynced), FormatTime(r.CheckpointTime), completed,
				FormatTime(r.CheckpointCompletionTime), lastErr)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
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
