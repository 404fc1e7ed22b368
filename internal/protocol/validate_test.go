package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
)

// Requests that act on an ID must name one: an empty ID is malformed at
// decode, so no handler ever sees it; where "no ID" has a meaning (the
// occupant of a Stage, a slot's parent, an unknown entry in a listing) it
// still decodes.
func TestDecodeRefusesMissingIDs(t *testing.T) {
	id := fileid.Make(fileid.FSID{1}, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	reg := &tree.Entry{Kind: tree.KindRegular}
	slot := tree.Slot{Parent: id, Name: "x"}
	cases := []struct {
		name string
		m    Message
		ok   bool
	}{
		{"Hash", &Hash{IDs: []fileid.ID{id, ""}}, false},
		{"Sig", &Sig{ID: ""}, false},
		{"Lookup IDs", &Lookup{IDs: []fileid.ID{""}}, false},
		{"Lookup slot without parent", &Lookup{Slots: []tree.Slot{{Name: "x"}}}, true},
		{"Limbo", &Limbo{Remove: []fileid.ID{""}}, false},
		{"Meta", &Meta{Items: []MetaItem{{Entry: reg}}}, false},
		{"Hello", &Hello{Version: Version}, false},
		{"PutFile first frame", &PutFile{Stream: 1, Mode: FileNew, Entry: reg, Slots: []tree.Slot{slot}, Last: true}, false},
		{"Delta first frame", &Delta{Stream: 1, Entry: reg, Last: true}, false},
		{"Stage of an unknown occupant", &Apply{Ops: []plan.Op{{Kind: plan.Stage, From: slot}}}, true},
		{"PurgeStrays", &Apply{Ops: []plan.Op{{Kind: plan.PurgeStrays}}}, true},
		{"ListChunk of an unknown entry", &ListChunk{Entries: []*tree.Entry{{Slot: slot, Kind: tree.KindRegular}}}, true},
	}
	for _, k := range []plan.Kind{plan.Move, plan.Link, plan.Mkdir, plan.Symlink, plan.Mknod, plan.Adopt, plan.Unlink, plan.RemoveTree, plan.Drop} {
		cases = append(cases, struct {
			name string
			m    Message
			ok   bool
		}{"Apply " + k.String(), &Apply{Ops: []plan.Op{{Kind: k, From: slot, To: slot, Entry: reg}}}, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(Frame{Type: c.m.Type(), Body: Encode(c.m)})
			switch {
			case c.ok && err != nil:
				t.Errorf("refused: %v", err)
			case !c.ok && !errors.Is(err, ErrMalformed):
				t.Errorf("decoded without error (%v), want ErrMalformed", err)
			case !c.ok && !strings.Contains(err.Error(), "file id"):
				t.Errorf("error does not name the file id: %v", err)
			}
		})
	}
}

// A reply too large for a frame is answered with an Error saying so, and
// the Replier keeps working: the session is not wedged.
func TestReplierOversizedReply(t *testing.T) {
	var out bytes.Buffer
	r := NewReplier(&out)
	big := &ListChunk{}
	for i := 0; i < MaxFrame/64; i++ {
		big.Entries = append(big.Entries, &tree.Entry{Slot: tree.Slot{Name: strings.Repeat("n", 60)}})
	}
	if err := r.Reply(7, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Reply of an oversized message: %v, want ErrFrameTooLarge", err)
	}
	if err := r.Reply(8, &Pong{}); err != nil {
		t.Fatalf("Reply after the oversized one: %v", err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(&out)
	if err != nil || f.Type != TError || f.ReqID != 7 {
		t.Fatalf("first frame: %+v %v, want an Error for request 7", f, err)
	}
	m, _ := Decode(f)
	if !strings.Contains(m.(*Error).Msg, "larger than a frame") {
		t.Errorf("error: %q", m.(*Error).Msg)
	}
	if f, err := ReadFrame(&out); err != nil || f.Type != TPong || f.ReqID != 8 {
		t.Errorf("second frame: %+v %v, want the Pong", f, err)
	}
}
