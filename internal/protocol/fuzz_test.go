package protocol

import (
	"bytes"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
)

func seedFrames() [][]byte {
	id := fileid.Make(fileid.FSID{1}, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	e := &tree.Entry{Slot: tree.Slot{Parent: id, Name: "new\nline"}, ID: id, Kind: tree.KindRegular, Size: 3}
	msgs := []Message{
		&Hello{Version: Version, Software: "x", RootID: id},
		&Apply{Ops: []plan.Op{{Kind: plan.Mkdir, ID: id, To: e.Slot, Entry: e}, {Kind: plan.Unlink, ID: id, From: e.Slot}}},
		&PutFile{Stream: 1, Mode: FileNew, Entry: e, Slots: []tree.Slot{e.Slot}, Data: []byte("abc"), Last: true},
		&Lookup{Slots: []tree.Slot{e.Slot}, IDs: []fileid.ID{id}},
		&ListChunk{Entries: []*tree.Entry{e}},
		&Meta{Items: []MetaItem{{Entry: e, SetXattrs: true, Xattrs: []Xattr{{Name: "user.a", Value: []byte("b")}}}}},
		&Check{Items: []CheckItem{{ID: id, Content: [16]byte{1}, Xattrs: [8]byte{2}}}},
		&CheckOK{Content: []uint64{0}, Xattrs: []uint64{1}},
		&Error{Msg: "fenced", Code: CodeFenced},
		&HelloOK{Version: Version, Entries: 3, NewRoot: true},
	}
	var out [][]byte
	for _, m := range msgs {
		var b bytes.Buffer
		WriteFrame(&b, m.Type(), 7, Encode(m))
		out = append(out, b.Bytes())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, raw := range seedFrames() {
		f, err := ReadFrame(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(Encode(m), f.Body) {
			t.Fatalf("%T does not round-trip", m)
		}
	}
}

// FuzzDecode: any bytes give a message or an error, never a panic, and a
// decoded message encodes back to what was read.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			m, err := Decode(fr)
			if err != nil {
				continue
			}
			m2, err := Decode(Frame{Type: fr.Type, Body: Encode(m)})
			if err != nil {
				t.Fatalf("re-encoded %T does not decode: %v", m, err)
			}
			if !bytes.Equal(Encode(m2), Encode(m)) {
				t.Fatalf("%T not stable", m)
			}
		}
	})
}
