// Package changelog owns the on-disk change journal format: versioned,
// checksummed files of ordered records — E (entry ops with parent ID + name),
// D (data changed), M (metadata changed) and G (a gap the journal cannot vouch
// for) — with names escaped so that any byte string is safe. It has the
// encoder, the decoder (which reports a corrupt or truncated file as an error,
// never a partial result) and the file naming used for rollover.
package changelog

import (
	"fmt"

	"github.com/georep/georep/internal/fileid"
)

// Type is the record type letter.
type Type byte

// Record types.
const (
	Entry Type = 'E' // a namespace operation
	Data  Type = 'D' // file content changed
	Meta  Type = 'M' // metadata (mode, owner, times, xattrs, ACLs) changed
	Gap   Type = 'G' // the journal cannot vouch for a period: crawl it
)

// Op is an entry operation.
type Op uint8

// Entry operations, as Gluster's changelog names them.
const (
	OpNone Op = iota
	OpCreate
	OpMkdir
	OpMknod
	OpSymlink
	OpLink
	OpRename
	OpUnlink
	OpRmdir
)

var opNames = [...]string{"NONE", "CREATE", "MKDIR", "MKNOD", "SYMLINK", "LINK", "RENAME", "UNLINK", "RMDIR"}

// String returns the op's name as written in changelogs ("CREATE", ...).
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("OP%d", uint8(o))
}

// ParseOp maps an op name to an Op.
func ParseOp(s string) (Op, bool) {
	for i, n := range opNames {
		if i > 0 && n == s {
			return Op(i), true
		}
	}
	return OpNone, false
}

// Record is one changelog record.
//
//	E: ID, Op, Parent+Name (the entry); for RENAME also NewParent+NewName.
//	D, M: ID, and optionally Parent+Name where the file was seen (a hint).
//	G: From and To (ns since the epoch) and Reason.
type Record struct {
	Type      Type
	Op        Op
	ID        fileid.ID
	Parent    fileid.ID
	Name      string
	NewParent fileid.ID
	NewName   string
	From, To  int64
	Reason    string
}

// String is a short rendering of the record for logs (IDs abbreviated).
func (r Record) String() string {
	switch r.Type {
	case Entry:
		if r.Op == OpRename {
			return fmt.Sprintf("E %s RENAME %s/%q -> %s/%q", r.ID.Short(), r.Parent.Short(), r.Name, r.NewParent.Short(), r.NewName)
		}
		return fmt.Sprintf("E %s %s %s/%q", r.ID.Short(), r.Op, r.Parent.Short(), r.Name)
	case Data, Meta:
		return fmt.Sprintf("%c %s", r.Type, r.ID.Short())
	case Gap:
		return fmt.Sprintf("G %d..%d %s", r.From, r.To, r.Reason)
	}
	return fmt.Sprintf("?%c", r.Type)
}
