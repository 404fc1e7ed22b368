package protocol

import (
	"github.com/georep/georep/internal/tree"
)

// Verify messages (types 50-59): the primary asks the secondary agent to
// describe its whole tree for `georep verify`, content digests included, so
// that no file content crosses the network.
//
//	VerifyList  ->  VerifyChunk* (same request id)  ->  VerifyEnd | Error
//
// The agent walks beneath its root (.georep excluded), hashes regular files
// itself with a bounded number of goroutines, and streams the items in
// chunks; the stream's flow control is the byte stream's own (the agent
// blocks when the primary does not read), so neither side holds more than a
// few chunks in flight.
const (
	TVerifyList  Type = 50
	TVerifyChunk Type = 51
	TVerifyEnd   Type = 52
)

func init() {
	Register(TVerifyList, func() Message { return &VerifyList{} })
	Register(TVerifyChunk, func() Message { return &VerifyChunk{} })
	Register(TVerifyEnd, func() Message { return &VerifyEnd{} })
}

// Limits on a verify request and its items.
const (
	maxVerifyExcludes = 4096
	// MaxVerifyJobs bounds the hashing goroutines a VerifyList may ask for.
	MaxVerifyJobs = 64
	// VerifyHashSize is the length of VerifyItem.Hash (see verify.Item.Hash).
	VerifyHashSize = 16
)

// VerifyList asks for every entry beneath the secondary root.
type VerifyList struct {
	Xattrs    bool     // read the xattrs verify compares (user.*, security.*, POSIX ACLs)
	FakeSuper bool     // also send user.georep.stat (VerifyItem.FakeStat)
	Excludes  []string // relative paths left out, with everything under them
	Jobs      uint32   // files hashed in parallel; 0 = the agent's default (at most MaxVerifyJobs)
}

func (*VerifyList) Type() Type { return TVerifyList }
func (m *VerifyList) Encode(e *Enc) {
	e.Bool(m.Xattrs)
	e.Bool(m.FakeSuper)
	e.Uvarint(uint64(len(m.Excludes)))
	for _, x := range m.Excludes {
		e.String(x)
	}
	e.Uvarint(uint64(m.Jobs))
}
func (m *VerifyList) Decode(d *Dec) {
	m.Xattrs = d.Bool()
	m.FakeSuper = d.Bool()
	n := d.Len(maxVerifyExcludes, 1)
	if n > 0 {
		m.Excludes = make([]string, n)
		for i := range m.Excludes {
			m.Excludes[i] = d.String()
		}
	}
	m.Jobs = d.Uint32()
	if m.Jobs > MaxVerifyJobs {
		d.fail("verify jobs")
	}
}

// VerifyItem describes one entry of the secondary tree the way verify.Item
// does, before fake-super is applied: the primary applies FakeStat itself,
// with the same code that reads a local replica.
type VerifyItem struct {
	Path      string    // relative to the secondary root, "/"-separated, raw bytes
	Kind      tree.Kind // tree.KindNone only together with Err
	Mode      uint32    // permission bits 07777
	UID, GID  uint32
	Size      int64
	Mtime     int64  // ns
	Rdev      uint64 // character and block devices only
	Target    string // symlink target
	Xattrs    []Xattr
	HasStat   bool   // user.georep.stat was asked for and is present
	FakeStat  []byte // its raw value
	HasHash   bool   // a regular file whose content was digested
	Hash      [VerifyHashSize]byte
	LinkGroup string // non-empty for a non-directory with several links: equal for one inode
	Err       string // the entry could not be fully read ("vanished" when it disappeared)
}

// Flags of an encoded VerifyItem.
const (
	viStat = 1 << iota
	viHash
	viTarget
	viXattrs
	viLinkGroup
	viErr
	viAll = viStat | viHash | viTarget | viXattrs | viLinkGroup | viErr
)

func encVerifyItem(e *Enc, it *VerifyItem) {
	var fl uint64
	if it.HasStat {
		fl |= viStat
	}
	if it.HasHash {
		fl |= viHash
	}
	if it.Target != "" {
		fl |= viTarget
	}
	if len(it.Xattrs) > 0 {
		fl |= viXattrs
	}
	if it.LinkGroup != "" {
		fl |= viLinkGroup
	}
	if it.Err != "" {
		fl |= viErr
	}
	e.Uvarint(fl)
	e.String(it.Path)
	e.Uvarint(uint64(it.Kind))
	e.Uvarint(uint64(it.Mode))
	e.Uvarint(uint64(it.UID))
	e.Uvarint(uint64(it.GID))
	e.Varint(it.Size)
	e.Varint(it.Mtime)
	e.Uvarint(it.Rdev)
	if fl&viTarget != 0 {
		e.String(it.Target)
	}
	if fl&viXattrs != 0 {
		encXattrs(e, it.Xattrs)
	}
	if fl&viStat != 0 {
		e.Bytes(it.FakeStat)
	}
	if fl&viHash != 0 {
		e.B = append(e.B, it.Hash[:]...)
	}
	if fl&viLinkGroup != 0 {
		e.String(it.LinkGroup)
	}
	if fl&viErr != 0 {
		e.String(it.Err)
	}
}

// decVerifyItem is strict so that a decoded item encodes back to the same
// bytes: flags agree with the fields they announce.
func decVerifyItem(d *Dec) VerifyItem {
	var it VerifyItem
	fl := d.Uvarint()
	if fl&^uint64(viAll) != 0 {
		d.fail("verify item flags")
	}
	it.Path = d.String()
	k := d.Uvarint()
	if k > uint64(tree.KindSocket) {
		d.fail("kind")
	}
	it.Kind = tree.Kind(k)
	it.Mode = d.Uint32()
	if it.Mode&^07777 != 0 {
		d.fail("mode")
	}
	it.UID = d.Uint32()
	it.GID = d.Uint32()
	it.Size = d.Varint()
	it.Mtime = d.Varint()
	it.Rdev = d.Uvarint()
	if fl&viTarget != 0 {
		if it.Target = d.String(); it.Target == "" {
			d.fail("symlink target")
		}
	}
	if fl&viXattrs != 0 {
		if it.Xattrs = decXattrs(d); len(it.Xattrs) == 0 {
			d.fail("xattrs")
		}
	}
	if fl&viStat != 0 {
		it.HasStat = true
		it.FakeStat = d.Bytes()
	}
	if fl&viHash != 0 {
		it.HasHash = true
		if d.Err == nil {
			if len(d.B) < VerifyHashSize {
				d.fail("digest")
			} else {
				copy(it.Hash[:], d.B[:VerifyHashSize])
				d.B = d.B[VerifyHashSize:]
			}
		}
	}
	if fl&viLinkGroup != 0 {
		if it.LinkGroup = d.String(); it.LinkGroup == "" {
			d.fail("link group")
		}
	}
	if fl&viErr != 0 {
		if it.Err = d.String(); it.Err == "" {
			d.fail("error text")
		}
	}
	return it
}

// EncodedSize estimates the bytes VerifyItem takes on the wire (an upper
// bound, for cutting chunks).
func (it *VerifyItem) EncodedSize() int {
	n := 80 + len(it.Path) + len(it.Target) + len(it.FakeStat) + len(it.LinkGroup) + len(it.Err)
	for _, x := range it.Xattrs {
		n += 20 + len(x.Name) + len(x.Value)
	}
	return n
}

// VerifyChunk carries some items of a verify listing.
type VerifyChunk struct{ Items []VerifyItem }

func (*VerifyChunk) Type() Type { return TVerifyChunk }
func (m *VerifyChunk) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Items)))
	for i := range m.Items {
		encVerifyItem(e, &m.Items[i])
	}
}
func (m *VerifyChunk) Decode(d *Dec) {
	n := d.Len(maxItems, 9)
	m.Items = make([]VerifyItem, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		m.Items = append(m.Items, decVerifyItem(d))
	}
}

// VerifyEnd ends a verify listing.
type VerifyEnd struct {
	Count  int64 // items sent in the chunks
	Hashed int64 // bytes of content digested on the secondary
}

func (*VerifyEnd) Type() Type      { return TVerifyEnd }
func (m *VerifyEnd) Encode(e *Enc) { e.Varint(m.Count); e.Varint(m.Hashed) }
func (m *VerifyEnd) Decode(d *Dec) { m.Count = d.Varint(); m.Hashed = d.Varint() }
