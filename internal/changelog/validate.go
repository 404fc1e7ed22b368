package changelog

import (
	"errors"
	"fmt"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// Validate checks a record against the rules of its type. Only records that
// pass are written, and the decoder applies the same rules, so every field a
// record carries survives a round trip:
//
//   - E: a valid ID, an op from CREATE to RMDIR, a valid Parent and a valid
//     Name (tree.ValidName); RENAME also needs a valid NewParent and NewName,
//     other ops must leave them empty. From, To and Reason must be zero.
//   - D, M: a valid ID and either no slot hint (Parent and Name both empty)
//     or a valid Parent and Name. Op, NewParent, NewName, From, To and Reason
//     must be zero.
//   - G: From <= To; Reason is any byte string. Every other field must be
//     zero.
func (r Record) Validate() error {
	switch r.Type {
	case Entry:
		if err := checkID("id", r.ID); err != nil {
			return fmt.Errorf("E record: %w", err)
		}
		if r.Op <= OpNone || r.Op > OpRmdir {
			return fmt.Errorf("E record: unknown op %d", uint8(r.Op))
		}
		if err := checkSlot("", r.Parent, r.Name); err != nil {
			return fmt.Errorf("E %s record: %w", r.Op, err)
		}
		if r.Op == OpRename {
			if err := checkSlot("new ", r.NewParent, r.NewName); err != nil {
				return fmt.Errorf("E RENAME record: %w", err)
			}
		} else if r.NewParent != "" || r.NewName != "" {
			return fmt.Errorf("E %s record: new parent/name set on a non-RENAME op", r.Op)
		}
		if r.From != 0 || r.To != 0 || r.Reason != "" {
			return fmt.Errorf("E %s record: gap fields set", r.Op)
		}
	case Data, Meta:
		if err := checkID("id", r.ID); err != nil {
			return fmt.Errorf("%c record: %w", r.Type, err)
		}
		if r.Parent != "" || r.Name != "" {
			if err := checkSlot("", r.Parent, r.Name); err != nil {
				return fmt.Errorf("%c record: slot hint: %w", r.Type, err)
			}
		}
		if r.Op != OpNone {
			return fmt.Errorf("%c record: op %s set", r.Type, r.Op)
		}
		if r.NewParent != "" || r.NewName != "" {
			return fmt.Errorf("%c record: new parent/name set", r.Type)
		}
		if r.From != 0 || r.To != 0 || r.Reason != "" {
			return fmt.Errorf("%c record: gap fields set", r.Type)
		}
	case Gap:
		if r.From > r.To {
			return fmt.Errorf("G record: from %d is after to %d", r.From, r.To)
		}
		if r.Op != OpNone || r.ID != "" || r.Parent != "" || r.Name != "" || r.NewParent != "" || r.NewName != "" {
			return errors.New("G record: entry fields set")
		}
	default:
		return fmt.Errorf("unknown record type %q", byte(r.Type))
	}
	return nil
}

func checkID(what string, id fileid.ID) error {
	if _, err := fileid.Parse(string(id)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// checkSlot checks a parent ID and name; prefix ("" or "new ") is only used
// in error messages.
func checkSlot(prefix string, parent fileid.ID, name string) error {
	if _, err := fileid.Parse(string(parent)); err != nil {
		return fmt.Errorf("%sparent: %w", prefix, err)
	}
	if !tree.ValidName(name) {
		return fmt.Errorf("invalid %sname %q", prefix, name)
	}
	return nil
}

// Validate checks a header: Source must be SourceJournal or SourceCrawl.
func (h Header) Validate() error {
	switch h.Source {
	case SourceJournal, SourceCrawl:
		return nil
	}
	return fmt.Errorf("unknown source %q (want %q or %q)", h.Source, SourceJournal, SourceCrawl)
}
