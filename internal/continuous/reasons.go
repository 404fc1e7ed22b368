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
