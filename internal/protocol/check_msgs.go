package protocol

import (
	"crypto/sha256"
	"sort"

	"github.com/georep/georep/internal/fileid"
)

// Content and attribute checks (types 60-61), for `georep sync --checksum`
// and files read too soon after a change.
//
//	Check  ->  CheckOK   digests of the primary's files; the secondary says which differ
//
// The primary sends, per file, a 16-byte prefix of its content's SHA-256
// and an 8-byte digest of its synced xattrs (XattrDigest); the secondary
// computes the same over its copy and answers with the indices that
// differ, so only differences travel back.
const (
	TCheck   Type = 60
	TCheckOK Type = 61
)

func init() {
	Register(TCheck, func() Message { return &Check{} })
	Register(TCheckOK, func() Message { return &CheckOK{} })
}

// CheckItem is one file to compare.
type CheckItem struct {
	ID      fileid.ID
	Content [16]byte // SHA-256 prefix of the content
	Xattrs  [8]byte  // XattrDigest of the synced xattrs
}

// Check asks the secondary to compare its copies with the primary's
// digests.
type Check struct{ Items []CheckItem }

func (*Check) Type() Type { return TCheck }
func (m *Check) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Items)))
	for _, it := range m.Items {
		encID(e, it.ID)
		e.B = append(e.B, it.Content[:]...)
		e.B = append(e.B, it.Xattrs[:]...)
	}
}
func (m *Check) Decode(d *Dec) {
	n := d.Len(maxItems, 25)
	m.Items = make([]CheckItem, n)
	for i := range m.Items {
		m.Items[i].ID = decID(d)
		if d.Err != nil || len(d.B) < 24 {
			d.fail("check item")
			return
		}
		copy(m.Items[i].Content[:], d.B[:16])
		copy(m.Items[i].Xattrs[:], d.B[16:24])
		d.B = d.B[24:]
	}
}

// CheckOK lists the indices (into Check.Items) of the files whose content
// differs (or is missing) and of those whose xattrs differ.
type CheckOK struct {
	Content []uint64
	Xattrs  []uint64
}

func (*CheckOK) Type() Type { return TCheckOK }
func (m *CheckOK) Encode(e *Enc) {
	for _, xs := range [][]uint64{m.Content, m.Xattrs} {
		e.Uvarint(uint64(len(xs)))
		for _, x := range xs {
			e.Uvarint(x)
		}
	}
}
func (m *CheckOK) Decode(d *Dec) {
	for _, xs := range []*[]uint64{&m.Content, &m.Xattrs} {
		n := d.Len(maxItems, 1)
		*xs = make([]uint64, n)
		for i := range *xs {
			(*xs)[i] = d.Uvarint()
		}
	}
}

// XattrDigest digests a set of xattrs, whatever their order: both sides
// compute it over the xattrs georep carries.
func XattrDigest(xs []Xattr) [8]byte {
	sorted := append([]Xattr(nil), xs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	var n [8]byte
	for _, x := range sorted {
		putLen(h, len(x.Name), &n)
		h.Write([]byte(x.Name))
		putLen(h, len(x.Value), &n)
		h.Write(x.Value)
	}
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

func putLen(h interface{ Write([]byte) (int, error) }, l int, buf *[8]byte) {
	for i := range buf {
		buf[i] = byte(l >> (8 * i))
	}
	h.Write(buf[:])
}
