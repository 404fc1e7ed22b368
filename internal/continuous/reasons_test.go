package continuous

import (
	"testing"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/status"
)

func TestCrawlReason(t *testing.T) {
	gap := func(reason string) changelog.Record {
		return changelog.Record{Type: changelog.Gap, From: 1, To: 2, Reason: reason}
	}
	entry := changelog.Record{Type: changelog.Entry, Op: changelog.OpCreate, ID: "x", Parent: "y", Name: "n"}
	for _, c := range []struct {
		name  string
		recs  []changelog.Record
		stime int64
		want  string
	}{
		{"no stime", []changelog.Record{gap(journal.ReasonOverflow)}, 0, status.CrawlFirstSync},
		{"restart", []changelog.Record{entry, gap(journal.ReasonRestart)}, 5, status.CrawlJournalDown},
		{"first start", []changelog.Record{gap(journal.ReasonFirstStart)}, 5, status.CrawlJournalDown},
		{"overflow", []changelog.Record{gap(journal.ReasonOverflow), gap(journal.ReasonRestart)}, 5, status.CrawlOverflow},
		{"size limit", []changelog.Record{gap(service.GapDropped)}, 5, status.CrawlSizeLimit},
		{"no position", []changelog.Record{gap(service.GapNoPosition)}, 5, status.CrawlNoPosition},
		{"unreadable", []changelog.Record{gap(gapUnreadable)}, 5, status.CrawlUnreadable},
		{"write failures", []changelog.Record{gap(journal.ReasonWriteFailed)}, 5, status.CrawlJournalFailure},
		{"no gap", []changelog.Record{entry}, 5, status.CrawlMissingParent},
	} {
		if got := CrawlReason(c.recs, c.stime); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	for _, r := range []string{ReasonFirstSync, ReasonJournalDown, ReasonOverflow, ReasonSizeLimit, ReasonNoPosition,
		ReasonUnreadable, ReasonJournalFailure, ReasonMissingParent, ReasonNoJournal, ReasonResync} {
		found := false
		for _, l := range status.CrawlReasonList {
			found = found || l == r
		}
		if !found {
			t.Errorf("reason %q is not in status.CrawlReasonList (no metric sample)", r)
		}
	}
}

func TestDropCoveredGaps(t *testing.T) {
	g := func(to int64) changelog.Record {
		return changelog.Record{Type: changelog.Gap, From: 0, To: to, Reason: journal.ReasonFirstStart}
	}
	e := changelog.Record{Type: changelog.Data, ID: "x"}
	recs := []changelog.Record{g(10), e, g(20), g(30)}
	got := DropCoveredGaps(recs, 20)
	if len(got) != 2 || got[0] != e || got[1].To != 30 {
		t.Errorf("DropCoveredGaps(stime 20) = %v", got)
	}
	if len(recs) != 4 || recs[0].To != 10 {
		t.Errorf("the input was modified: %v", recs)
	}
	if got := DropCoveredGaps(recs, 0); len(got) != 4 {
		t.Errorf("stime 0 dropped gaps: %v", got)
	}
}
