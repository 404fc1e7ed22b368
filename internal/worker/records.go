package worker

import (
	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
)

// Records renders a job as changelog records — what the crawl found, in the
// journal's vocabulary: a staged entry placed elsewhere is a RENAME, a new
// file a CREATE plus its hardlinks as LINKs, changed content a D, metadata
// an M. `georep changelog dump` shows them.
func (j *Job) Records() []changelog.Record {
	var recs []changelog.Record
	stagedFrom := map[fileid.ID]tree.Slot{}
	for _, op := range j.Plan.Ops {
		switch op.Kind {
		case plan.Stage:
			if op.ID != "" {
				if _, ok := stagedFrom[op.ID]; !ok {
					stagedFrom[op.ID] = op.From
				}
			} else {
				recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpUnlink, ID: op.From.Parent, Parent: op.From.Parent, Name: op.From.Name})
			}
		case plan.Move:
			if from, ok := stagedFrom[op.ID]; ok {
				delete(stagedFrom, op.ID)
				recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpRename, ID: op.ID, Parent: from.Parent, Name: from.Name, NewParent: op.To.Parent, NewName: op.To.Name})
			} else {
				recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpLink, ID: op.ID, Parent: op.To.Parent, Name: op.To.Name})
			}
		case plan.Link:
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpLink, ID: op.ID, Parent: op.To.Parent, Name: op.To.Name})
		case plan.Mkdir:
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpMkdir, ID: op.ID, Parent: op.To.Parent, Name: op.To.Name})
		case plan.Symlink:
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpSymlink, ID: op.ID, Parent: op.To.Parent, Name: op.To.Name})
		case plan.Mknod:
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpMknod, ID: op.ID, Parent: op.To.Parent, Name: op.To.Name})
		case plan.Unlink:
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpUnlink, ID: op.ID, Parent: op.From.Parent, Name: op.From.Name})
		}
	}
	// Staged and never placed: removed (directories) or in limbo.
	for id, from := range stagedFrom {
		recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpRmdir, ID: id, Parent: from.Parent, Name: from.Name})
	}
	for _, nf := range j.Plan.NewFiles {
		for i, s := range nf.Slots {
			op := changelog.OpCreate
			if i > 0 {
				op = changelog.OpLink
			}
			recs = append(recs, changelog.Record{Type: changelog.Entry, Op: op, ID: nf.Entry.ID, Parent: s.Parent, Name: s.Name})
		}
		recs = append(recs, changelog.Record{Type: changelog.Data, ID: nf.Entry.ID})
	}
	for _, d := range j.Data {
		recs = append(recs, changelog.Record{Type: changelog.Data, ID: d.Entry.ID, Parent: d.Hint.Parent, Name: d.Hint.Name})
	}
	for _, m := range j.Meta {
		r := changelog.Record{Type: changelog.Meta, ID: m.Entry.ID}
		if m.Hint.Parent != "" {
			r.Parent, r.Name = m.Hint.Parent, m.Hint.Name
		}
		recs = append(recs, r)
	}
	// Only records the format accepts (an unknown stray has no ID).
	out := recs[:0]
	for _, r := range recs {
		if r.ID.Valid() && r.Validate() == nil {
			out = append(out, r)
		}
	}
	return out
}
