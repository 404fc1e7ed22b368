package worker

import (
	"time"

	"github.com/georep/georep/internal/tree"
)

// quickCheckWindow is how recent a primary mtime may be for the quick check of
// arrivedBefore to be trusted: a file written again within it may keep its
// size and, on a coarse clock, its mtime.
const quickCheckWindow = 2 * time.Second

// arrivedBefore reports whether the content a batch's data record names is
// already on the secondary: the secondary's copy (old, at the same slot and
// ID) has the primary's size and mtime, which the secondary sets only after
// the content arrived, and the mtime is not recent. A batch replayed after
// a failed attempt (a full disk) then sends again only what did not arrive,
// as rsync's quick check would.
func arrivedBefore(old, e *tree.Entry, now time.Time) bool {
	return old != nil && old.ID == e.ID && old.ID != "" && old.Kind == tree.KindRegular && e.Kind == tree.KindRegular &&
		old.Size == e.Size && old.Meta.Mtime == e.Meta.Mtime &&
		now.UnixNano()-e.Meta.Mtime > int64(quickCheckWindow)
}
