package session

import (
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/worker"
)

// IgnoreDeletes implements the ignore-deletes key on a job before it is
// applied: what the primary deleted stays on the secondary.
//
//   - An UNLINK of a name nothing takes over in this plan is dropped, and so
//     is the DROP of its ID (the secondary's index keeps it).
//   - A directory the plan would stage and then remove (RMTREE) stays where
//     it is, with its contents.
//   - Entries the secondary has and georep did not make (strays) stay too.
//   - A name the primary reuses (rm f; create f; or a rename over it) is
//     still replaced: that is a change of the name, not a delete. A
//     replaced directory is removed with what it held, as before.
//   - Renames are renames: the old name does not stay behind.
//
// A deleted file thus survives on the secondary under its name until the
// primary puts something else there. The kept entries are not in the
// primary's tree, so `georep verify` reports them as extra.
func IgnoreDeletes(job *worker.Job) {
	ops := job.Plan.Ops
	taken := map[tree.Slot]bool{}
	removed := map[fileid.ID]bool{}
	for _, op := range ops {
		switch op.Kind {
		case plan.Move, plan.Link, plan.Mkdir, plan.Symlink, plan.Mknod, plan.Adopt:
			taken[op.To] = true
		case plan.RemoveTree:
			removed[op.ID] = true
		}
	}
	for _, nf := range job.Plan.NewFiles {
		for _, s := range nf.Slots {
			taken[s] = true
		}
	}
	skippedUnlink := map[fileid.ID]bool{}
	keptStage := map[fileid.ID]bool{}
	skippedStage := map[fileid.ID]bool{}
	strays := false
	out := ops[:0:0]
	for _, op := range ops {
		switch op.Kind {
		case plan.Unlink:
			if !taken[op.From] {
				skippedUnlink[op.ID] = true
				continue
			}
		case plan.Stage:
			switch {
			case op.ID == "":
				if !taken[op.From] {
					continue
				}
				strays = true
			case removed[op.ID]:
				if !taken[op.From] {
					skippedStage[op.ID] = true
					continue
				}
				keptStage[op.ID] = true
			}
		}
		out = append(out, op)
	}
	ops, out = out, ops[:0:0]
	for _, op := range ops {
		switch op.Kind {
		case plan.Drop:
			if skippedUnlink[op.ID] {
				continue
			}
		case plan.RemoveTree:
			if skippedStage[op.ID] && !keptStage[op.ID] {
				continue
			}
		case plan.PurgeStrays:
			if !strays {
				continue
			}
		}
		out = append(out, op)
	}
	job.Plan.Ops = out
}
