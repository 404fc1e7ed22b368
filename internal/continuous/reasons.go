package continuous

import (
	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/status"
)

// Crawl reasons (status.CrawlReasonList): the reason label of
// georep_crawls_total and what `georep status` shows as the last crawl's
// cause.
const (
	ReasonFirstSync      = status.CrawlFirstSync
	ReasonJournalDown    = status.CrawlJournalDown
	ReasonOverflow       = status.CrawlOverflow
	ReasonSizeLimit      = status.CrawlSizeLimit
	ReasonNoPosition     = status.CrawlNoPosition
	ReasonUnreadable     = status.CrawlUnreadable
	ReasonJournalFailure = status.CrawlJournalFailure
	ReasonMissingParent  = status.CrawlMissingParent
	ReasonNoJournal      = status.CrawlNoJournal
	ReasonResync         = status.CrawlResync
	ReasonOptions        = status.CrawlOptionsWidened
)

// gapUnreadable is the G record reason the worker puts for a changelog it
// cannot read.
const gapUnreadable = "unreadable changelog"

// CrawlReason says why a batch of records needs a crawl since stime: the
// first sync, else its first gap's cause, else an entry the changelogs
// cannot place.
func CrawlReason(recs []changelog.Record, stime int64) string {
	if stime == 0 {
		return ReasonFirstSync
	}
	for _, r := range recs {
		if r.Type == changelog.Gap {
			return gapReason(r.Reason)
		}
	}
	return ReasonMissingParent
}

func gapReason(g string) string {
	switch g {
	case journal.ReasonFirstStart, journal.ReasonRestart:
		return ReasonJournalDown
	case journal.ReasonOverflow:
		return ReasonOverflow
	case service.GapDropped:
		return ReasonSizeLimit
	case service.GapNoPosition:
		return ReasonNoPosition
	case gapUnreadable:
		return ReasonUnreadable
	}
	return ReasonJournalFailure
}

func (s *Status) countCrawl(reason string) {
	s.Crawls++
	s.LastCrawlReason = reason
	if s.CrawlReasons == nil {
		s.CrawlReasons = map[string]int64{}
	}
	s.CrawlReasons[reason]++
}

// DropCoveredGaps removes the gap records that end at or before stime: the
// secondary holds everything the primary had at stime, so what the journal
// missed before then is already there (the gap of a journal's first start,
// read after the first sync's crawl). The rest are kept in order; recs is
// not modified.
func DropCoveredGaps(recs []changelog.Record, stime int64) []changelog.Record {
	n := 0
	for i := range recs {
		if recs[i].Type == changelog.Gap && recs[i].To <= stime {
			n++
		}
	}
	if n == 0 {
		return recs
	}
	out := make([]changelog.Record, 0, len(recs)-n)
	for _, r := range recs {
		if r.Type != changelog.Gap || r.To > stime {
			out = append(out, r)
		}
	}
	return out
}
