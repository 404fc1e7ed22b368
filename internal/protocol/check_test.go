package protocol

import (
	"slices"
	"testing"

	"github.com/georep/georep/internal/fileid"
)

func TestCheckRoundTrip(t *testing.T) {
	id := fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	in := &Check{Items: []CheckItem{{ID: id, Content: [16]byte{1, 2}, Xattrs: [8]byte{3}}, {ID: id, Content: [16]byte{9}}}}
	var out Check
	d := &Dec{B: Encode(in)}
	out.Decode(d)
	if err := d.Done(); err != nil || !slices.Equal(out.Items, in.Items) {
		t.Fatalf("Check round trip: %+v, %v", out.Items, err)
	}
	ok := &CheckOK{Content: []uint64{0, 5}, Xattrs: []uint64{3}}
	var ok2 CheckOK
	d = &Dec{B: Encode(ok)}
	ok2.Decode(d)
	if err := d.Done(); err != nil || !slices.Equal(ok2.Content, ok.Content) || !slices.Equal(ok2.Xattrs, ok.Xattrs) {
		t.Fatalf("CheckOK round trip: %+v, %v", ok2, err)
	}
	// A truncated item is an error, not a panic.
	b := Encode(in)
	var bad Check
	d = &Dec{B: b[:len(b)-3]}
	bad.Decode(d)
	if d.Done() == nil {
		t.Error("a truncated Check decoded")
	}
}

func TestXattrDigest(t *testing.T) {
	a := []Xattr{{Name: "user.a", Value: []byte("1")}, {Name: "user.b", Value: []byte("2")}}
	b := []Xattr{a[1], a[0]}
	if XattrDigest(a) != XattrDigest(b) {
		t.Error("the digest depends on the order")
	}
	for _, other := range [][]Xattr{
		nil,
		{a[0]},
		{{Name: "user.a", Value: []byte("1")}, {Name: "user.b", Value: []byte("3")}},
		{{Name: "user.a1", Value: nil}, {Name: "user.b", Value: []byte("2")}}, // name/value boundaries
	} {
		if XattrDigest(other) == XattrDigest(a) {
			t.Errorf("%v digests like %v", other, a)
		}
	}
	if XattrDigest(nil) != XattrDigest([]Xattr{}) {
		t.Error("no xattrs: two digests")
	}
}
