package status

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/state"
)

func TestCheckpoint(t *testing.T) {
	cp := time.Unix(1000, 0)
	r := Report{StimeNS: time.Unix(999, 0).UnixNano()}
	if r.UpdateCheckpoint(cp, time.Unix(2000, 0)) || r.CheckpointCompleted || r.CheckpointTime == nil {
		t.Fatalf("completed early: %+v", r)
	}
	r.StimeNS = cp.UnixNano()
	if !r.UpdateCheckpoint(cp, time.Unix(2000, 0)) || !r.CheckpointCompleted || !r.CheckpointCompletionTime.Equal(time.Unix(2000, 0)) {
		t.Fatalf("not completed: %+v", r)
	}
	// Noticed once: the completion time stays.
	if r.UpdateCheckpoint(cp, time.Unix(3000, 0)) || !r.CheckpointCompletionTime.Equal(time.Unix(2000, 0)) {
		t.Fatalf("completion time moved: %+v", r)
	}
	// A new checkpoint resets it.
	if r.UpdateCheckpoint(time.Unix(5000, 0), time.Unix(3000, 0)) || r.CheckpointCompleted || r.CheckpointCompletionTime != nil {
		t.Fatalf("new checkpoint not reset: %+v", r)
	}
	r.UpdateCheckpoint(time.Time{}, time.Unix(3000, 0))
	if r.CheckpointTime != nil {
		t.Fatalf("cleared checkpoint kept: %+v", r)
	}
}

func TestTableAndJSON(t *testing.T) {
	synced := time.Date(2026, 5, 6, 7, 8, 9, 0, time.Local)
	reports := []Report{
		{Session: "backup", Primary: "/srv/data", Secondary: "dr:/srv/data", Status: Active, CrawlStatus: "Changelog Crawl",
			LastSynced: &synced, LagSeconds: 1.25, Entry: 3, Failures: 2, FilesSynced: 10, BytesSynced: 2048},
		{Session: "old", Primary: "/a", Secondary: "/b", Status: Faulty, LastError: "ssh: connect\nrefused", LastErrorTime: &synced},
	}
	var b bytes.Buffer
	WriteTable(&b, reports, false)
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SESSION") || !strings.Contains(lines[0], "CRAWL STATUS") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"Active", "Changelog Crawl", "2026-05-06 07:08:09", "1.3s"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row lacks %q: %s", want, lines[1])
		}
	}
	if !strings.Contains(lines[2], "Faulty") || !strings.Contains(lines[2], "N/A") {
		t.Errorf("faulty row: %s", lines[2])
	}
	b.Reset()
	WriteTable(&b, reports, true)
	if !strings.Contains(b.String(), "CHECKPOINT COMPLETION TIME") || !strings.Contains(b.String(), "ssh: connect refused") || !strings.Contains(b.String(), "2.0 KiB") {
		t.Errorf("detail:\n%s", b.String())
	}
	b.Reset()
	WriteJSON(&b, reports)
	var raw []map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"session", "primary", "secondary", "status", "crawl_status", "last_synced", "lag_seconds", "entry", "data", "meta",
		"failures", "files_synced", "bytes_synced", "checkpoint_time", "checkpoint_completed", "checkpoint_completion_time", "last_error"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	b.Reset()
	WriteJSON(&b, nil)
	if strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("no sessions: %q", b.String())
	}
}

func TestFormatLag(t *testing.T) {
	for sec, want := range map[float64]string{0: "0s", 1.26: "1.3s", 42.4: "42s", 125: "2m5s", 7500: "2h5m"} {
		if got := FormatLag(sec); got != want {
			t.Errorf("FormatLag(%v) = %q, want %q", sec, got, want)
		}
	}
}

func TestOffline(t *testing.T) {
	st := session.Store{Root: t.TempDir()}
	cp := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := &session.Session{Name: "s1", Primary: "/p", Secondary: "/s", State: session.Started, Checkpoint: cp}
	if err := st.Create(s); err != nil {
		t.Fatal(err)
	}
	// The daemon's last report said Active; the stime passed the checkpoint.
	Save(st, Report{Session: "s1", Status: Active, CrawlStatus: "Changelog Crawl", Live: true, FilesSynced: 7})
	state.WriteStime(st.StimePath("s1"), time.Now().UnixNano())
	os.WriteFile(st.FailuresPath("s1"), []byte(`[{"id":"00","path":"a","op":"DATA","error":"x"}]`), 0o600)
	list, _ := st.List()
	r := Offline(st, list[0])
	if r.Status != Stopped || r.Live || r.CrawlStatus != "" || r.FilesSynced != 7 || r.Failures != 1 || !r.CheckpointCompleted ||
		r.CheckpointCompletionTime != nil || r.LastSynced == nil {
		t.Errorf("offline report %+v", r)
	}
}

func TestETA(t *testing.T) {
	cases := []struct {
		remaining int64
		rate      float64
		want      time.Duration
	}{
		{100 << 20, 10 << 20, 10 * time.Second}, // the progress line's case: 100 MiB left at 10 MiB/s
		{1, 2, 500 * time.Millisecond},
		{0, 10, 0},
		{10, 0, 0},
		{-5, 10, 0},
	}
	for _, c := range cases {
		if got := ETA(c.remaining, c.rate); got != c.want {
			t.Errorf("ETA(%d, %v) = %v, want %v", c.remaining, c.rate, got, c.want)
		}
	}
}

func TestRateWindow(t *testing.T) {
	var w RateWindow
	t0 := time.Unix(100, 0)
	if w.Rate() != 0 {
		t.Fatal("an empty window has a rate")
	}
	w.Add(t0, 0)
	w.Add(t0.Add(time.Second), 10)
	if r := w.Rate(); r != 10 {
		t.Errorf("rate %v, want 10", r)
	}
	// Fast at first, slow in the last 10 s: the recent rate counts.
	w.Add(t0.Add(2*time.Second), 1000)
	for i := 3; i <= 30; i++ {
		w.Add(t0.Add(time.Duration(i)*time.Second), 1000+int64(i-2))
	}
	if r := w.Rate(); r < 0.9 || r > 1.1 {
		t.Errorf("recent rate %v, want about 1", r)
	}
	w.Add(t0.Add(31*time.Second), 5) // a new transfer
	if r := w.Rate(); r != 0 {
		t.Errorf("rate %v after a restart", r)
	}
}

func TestTableShowsRemainingAndETA(t *testing.T) {
	r := Report{Session: "s", Status: Active, CrawlStatus: "Hybrid Crawl", RemainingEntries: 3, RemainingFiles: 120, RemainingBytes: 5 << 20,
		RateBytes: 1 << 20, ETASeconds: 5}
	var b bytes.Buffer
	WriteTable(&b, []Report{r}, true)
	out := b.String()
	for _, want := range []string{"REMAINING", "ETA", "3 entries, 120 files (5.0 MiB)", "5s", "1.0 MiB/s", "FILES REMAINING"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var j bytes.Buffer
	WriteJSON(&j, []Report{r})
	for _, want := range []string{`"remaining_files": 120`, `"eta_seconds": 5`, `"remaining_bytes": 5242880`} {
		if !strings.Contains(j.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, j.String())
		}
	}
}
