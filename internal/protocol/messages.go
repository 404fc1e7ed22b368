package protocol

import (
	"errors"
	"fmt"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
)

// Type is a message type.
type Type uint8

// Message types.
const (
	TError Type = iota + 1
	THello
	THelloOK
	TList
	TListChunk
	TListEnd
	TLookup
	TLookupOK
	TApply
	TApplyOK
	TPutFile
	TPutFileOK
	TSig
	TSigOK
	TDelta
	TDeltaOK
	TMeta
	TMetaOK
	TStimeGet
	TStimeOK
	TStimeSet
	TPing
	TPong
	TLimbo
	TLimboOK
	THash
	THashOK
	TBye
	typeEnd
)

// Message is a decodable message body.
type Message interface {
	Type() Type
	Encode(e *Enc)
	Decode(d *Dec)
}

// Message types outside the core set register here (from init functions
// in their own files), so features can add messages without touching the
// core switch. Ranges: 40-49 bulk data, 50-59 verify, 60-69 reserved.
var registered = map[Type]func() Message{}

// Register adds a message type; it panics on a clash (a programming error).
func Register(t Type, mk func() Message) {
	if _, dup := registered[t]; dup || t < 40 {
		panic(fmt.Sprintf("protocol: message type %d registered twice or in the core range", t))
	}
	registered[t] = mk
}

// New returns an empty message of type t.
func New(t Type) (Message, error) {
	if mk, ok := registered[t]; ok {
		return mk(), nil
	}
	switch t {
	case TError:
		return &Error{}, nil
	case THello:
		return &Hello{}, nil
	case THelloOK:
		return &HelloOK{}, nil
	case TList:
		return &List{}, nil
	case TListChunk:
		return &ListChunk{}, nil
	case TListEnd:
		return &ListEnd{}, nil
	case TLookup:
		return &Lookup{}, nil
	case TLookupOK:
		return &LookupOK{}, nil
	case TApply:
		return &Apply{}, nil
	case TApplyOK:
		return &ApplyOK{}, nil
	case TPutFile:
		return &PutFile{}, nil
	case TPutFileOK, TDeltaOK:
		return &FileOK{T: t}, nil
	case TSig:
		return &Sig{}, nil
	case TSigOK:
		return &SigOK{}, nil
	case TDelta:
		return &Delta{}, nil
	case TMeta:
		return &Meta{}, nil
	case TMetaOK:
		return &MetaOK{}, nil
	case TStimeGet:
		return &StimeGet{}, nil
	case TStimeOK:
		return &StimeOK{}, nil
	case TStimeSet:
		return &StimeSet{}, nil
	case TPing:
		return &Ping{}, nil
	case TPong:
		return &Pong{}, nil
	case TLimbo:
		return &Limbo{}, nil
	case TLimboOK:
		return &LimboOK{}, nil
	case THash:
		return &Hash{}, nil
	case THashOK:
		return &HashOK{}, nil
	case TBye:
		return &Bye{}, nil
	}
	return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, t)
}

// Decode parses a frame's body.
func Decode(f Frame) (Message, error) {
	m, err := New(f.Type)
	if err != nil {
		return nil, err
	}
	d := &Dec{B: f.Body}
	m.Decode(d)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode %T: %w", m, err)
	}
	return m, nil
}

// Encode renders a message body.
func Encode(m Message) []byte {
	e := &Enc{}
	m.Encode(e)
	return e.B
}

// Limits on counts in one message.
const (
	maxItems  = 1 << 20
	maxXattrs = 4096
)

func encID(e *Enc, id fileid.ID) { e.String(string(id)) }

// decID reads an ID that may be absent (""): a slot's parent, an unknown
// entry's ID in a listing, the occupant of a Stage.
func decID(d *Dec) fileid.ID {
	s := d.String()
	if s == "" || d.Err != nil {
		return ""
	}
	id, err := fileid.Parse(s)
	if err != nil {
		d.fail("file id")
		return ""
	}
	return id
}

// decReqID reads an ID that must be there: what a request acts on. An
// empty one is malformed, so no handler ever sees it.
func decReqID(d *Dec) fileid.ID {
	id := decID(d)
	if id == "" {
		d.fail("file id (empty)")
	}
	return id
}

// needsID reports whether an entry operation acts on an ID it names: all
// but Stage (whose ID may be empty: an unknown occupant) and PurgeStrays.
func needsID(k plan.Kind) bool { return k != plan.Stage && k != plan.PurgeStrays }

func encSlot(e *Enc, s tree.Slot) { encID(e, s.Parent); e.String(s.Name) }

// decSlot reads a slot; names are checked by the receiver's confinement
// layer, not here, so that a bad name gets a per-op error.
func decSlot(d *Dec) tree.Slot { return tree.Slot{Parent: decID(d), Name: d.String()} }

func encEntry(e *Enc, x *tree.Entry) {
	encSlot(e, x.Slot)
	encID(e, x.ID)
	e.Uvarint(uint64(x.Kind))
	e.Uvarint(uint64(x.Meta.Mode))
	e.Uvarint(uint64(x.Meta.UID))
	e.Uvarint(uint64(x.Meta.GID))
	e.Varint(x.Meta.Atime)
	e.Varint(x.Meta.Mtime)
	e.Varint(x.Size)
	e.Varint(x.Ctime)
	e.Uvarint(uint64(x.Nlink))
	e.Uvarint(x.Rdev)
	e.String(x.Target)
}

func decEntry(d *Dec) *tree.Entry {
	x := &tree.Entry{}
	x.Slot = decSlot(d)
	x.ID = decID(d)
	k := d.Uvarint()
	if k > uint64(tree.KindSocket) {
		d.fail("kind")
	}
	x.Kind = tree.Kind(k)
	x.Meta.Mode = d.Uint32() & 07777
	x.Meta.UID = d.Uint32()
	x.Meta.GID = d.Uint32()
	x.Meta.Atime = d.Varint()
	x.Meta.Mtime = d.Varint()
	x.Size = d.Varint()
	x.Ctime = d.Varint()
	x.Nlink = d.Uint32()
	x.Rdev = d.Uvarint()
	x.Target = d.String()
	return x
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

func encXattrs(e *Enc, xs []Xattr) {
	e.Uvarint(uint64(len(xs)))
	for _, x := range xs {
		e.String(x.Name)
		e.Bytes(x.Value)
	}
}

func decXattrs(d *Dec) []Xattr {
	n := d.Len(maxXattrs, 2)
	if n == 0 {
		return nil
	}
	xs := make([]Xattr, n)
	for i := range xs {
		xs[i].Name = d.String()
		xs[i].Value = d.Bytes()
	}
	return xs
}

// Error is a failed request.
type Error struct {
	Msg  string
	Code ErrorCode // what kind of refusal, so the primary can tell by type
}

// ErrorCode classifies an Error; 0 is any other failure.
type ErrorCode uint64

// Error codes.
const (
	// CodeFenced: the secondary root was promoted to a primary
	// (georep promote) and accepts no session that writes.
	CodeFenced ErrorCode = iota + 1
	// CodeForeign: the secondary holds another primary's replica and the
	// session did not ask for --force.
	CodeForeign
)

// Sentinels an Error with a code matches under errors.Is.
var (
	ErrFenced  = errors.New("the secondary was promoted to a primary and is fenced")
	ErrForeign = errors.New("the secondary holds a replica of another primary")
)

func (*Error) Type() Type      { return TError }
func (m *Error) Encode(e *Enc) { e.String(m.Msg); e.Uvarint(uint64(m.Code)) }
func (m *Error) Decode(d *Dec) { m.Msg = d.String(); m.Code = ErrorCode(d.Uvarint()) }
func (m *Error) Error() string { return m.Msg }

// Is matches the sentinel of the error's code.
func (m *Error) Is(target error) bool {
	switch m.Code {
	case CodeFenced:
		return target == ErrFenced
	case CodeForeign:
		return target == ErrForeign
	}
	return false
}

// Hello opens a session.
type Hello struct {
	Version   uint64
	Software  string    // georep version of the primary
	RootID    fileid.ID // the primary root's ID: the secondary root stands for it
	Session   string    // a name for logs
	FakeSuper bool      // store owner and special files in xattrs even as root
	// ReadOnly opens a session that only reads (verify): it creates,
	// cleans and locks nothing, and write requests are refused.
	ReadOnly bool
	// DeferDurability (a one-shot sync over a network): StimeSet is
	// answered at once and the secondary makes the session's writes
	// durable (syncfs) when the session ends, recording the stime only
	// after that; no early writeback during the session. The stime on the
	// secondary stays the record of what is durable there.
	DeferDurability bool
	// Force accepts a root that holds a replica of another primary (its
	// index is then started anew and its content adopted by path).
	Force bool
	// Check only asks whether the secondary would accept the session
	// (session create): nothing is created, locked or reset; HelloOK says
	// how many entries the root holds. Later requests are read-only.
	Check bool
}

func (*Hello) Type() Type { return THello }
func (m *Hello) Encode(e *Enc) {
	e.Uvarint(m.Version)
	e.String(m.Software)
	encID(e, m.RootID)
	e.String(m.Session)
	e.Bool(m.FakeSuper)
	e.Bool(m.ReadOnly)
	e.Bool(m.DeferDurability)
	e.Bool(m.Force)
	e.Bool(m.Check)
}
func (m *Hello) Decode(d *Dec) {
	m.Version = d.Uvarint()
	m.Software = d.String()
	m.RootID = decReqID(d)
	m.Session = d.String()
	m.FakeSuper = d.Bool()
	m.ReadOnly = d.Bool()
	m.DeferDurability = d.Bool()
	m.Force = d.Bool()
	m.Check = d.Bool()
}

// HelloOK accepts a session.
type HelloOK struct {
	Version   uint64
	Software  string
	FakeSuper bool // the agent cannot chown/mknod and stores those in xattrs
	Stime     int64
	NewRoot   bool  // the secondary root had no georep index yet
	Entries   int64 // Check: entries in the root besides .georep
}

func (*HelloOK) Type() Type { return THelloOK }
func (m *HelloOK) Encode(e *Enc) {
	e.Uvarint(m.Version)
	e.String(m.Software)
	e.Bool(m.FakeSuper)
	e.Varint(m.Stime)
	e.Bool(m.NewRoot)
	e.Varint(m.Entries)
}
func (m *HelloOK) Decode(d *Dec) {
	m.Version = d.Uvarint()
	m.Software = d.String()
	m.FakeSuper = d.Bool()
	m.Stime = d.Varint()
	m.NewRoot = d.Bool()
	m.Entries = d.Varint()
}

// List asks for the secondary's whole tree.
type List struct{}

func (*List) Type() Type  { return TList }
func (*List) Encode(*Enc) {}
func (*List) Decode(*Dec) {}

// ListChunk carries part of a listing (same request id as the List).
type ListChunk struct{ Entries []*tree.Entry }

func (*ListChunk) Type() Type { return TListChunk }
func (m *ListChunk) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Entries)))
	for _, x := range m.Entries {
		encEntry(e, x)
	}
}
func (m *ListChunk) Decode(d *Dec) {
	n := d.Len(maxItems, 16)
	m.Entries = make([]*tree.Entry, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		m.Entries = append(m.Entries, decEntry(d))
	}
}

// ListEnd ends a listing; Root describes the secondary root itself.
type ListEnd struct {
	Count int64
	Root  *tree.Entry
	Limbo []fileid.ID // IDs in the staging area
	// Committed is when (the secondary's clock, Unix ns) it last recorded
	// an stime, 0 when never. The listing's entries carry their ctime (in
	// Entry.Ctime): one newer than Committed was changed on the secondary
	// by someone else since (or by an attempt that did not complete).
	Committed int64
}

func (*ListEnd) Type() Type { return TListEnd }
func (m *ListEnd) Encode(e *Enc) {
	e.Varint(m.Count)
	encEntry(e, m.Root)
	encIDs(e, m.Limbo)
	e.Varint(m.Committed)
}
func (m *ListEnd) Decode(d *Dec) {
	m.Count = d.Varint()
	m.Root = decEntry(d)
	m.Limbo = decIDs(d)
	m.Committed = d.Varint()
}

func encIDs(e *Enc, ids []fileid.ID) {
	e.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		encID(e, id)
	}
}

func decIDs(d *Dec) []fileid.ID {
	n := d.Len(maxItems, 1)
	if n == 0 {
		return nil
	}
	ids := make([]fileid.ID, n)
	for i := range ids {
		ids[i] = decReqID(d)
	}
	return ids
}

// Lookup asks what the secondary holds at some slots and about some IDs.
type Lookup struct {
	Slots []tree.Slot
	IDs   []fileid.ID
}

func (*Lookup) Type() Type { return TLookup }
func (m *Lookup) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Slots)))
	for _, s := range m.Slots {
		encSlot(e, s)
	}
	encIDs(e, m.IDs)
}
func (m *Lookup) Decode(d *Dec) {
	n := d.Len(maxItems, 2)
	m.Slots = make([]tree.Slot, n)
	for i := range m.Slots {
		m.Slots[i] = decSlot(d)
	}
	m.IDs = decIDs(d)
}

// LookupOK answers a Lookup: Entries[i] is the occupant of Slots[i] (nil if
// none); Infos[i] describes IDs[i].
type LookupOK struct {
	Entries []*tree.Entry
	Infos   []plan.IDInfo
}

func (*LookupOK) Type() Type { return TLookupOK }
func (m *LookupOK) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Entries)))
	for _, x := range m.Entries {
		e.Bool(x != nil)
		if x != nil {
			encEntry(e, x)
		}
	}
	e.Uvarint(uint64(len(m.Infos)))
	for _, in := range m.Infos {
		encInfo(e, in)
	}
}
func (m *LookupOK) Decode(d *Dec) {
	n := d.Len(maxItems, 1)
	m.Entries = make([]*tree.Entry, n)
	for i := range m.Entries {
		if d.Bool() {
			m.Entries[i] = decEntry(d)
		}
	}
	n = d.Len(maxItems, 4)
	m.Infos = make([]plan.IDInfo, n)
	for i := range m.Infos {
		m.Infos[i] = decInfo(d)
	}
}

func encInfo(e *Enc, in plan.IDInfo) {
	e.Bool(in.Exists)
	e.Uvarint(uint64(in.Kind))
	e.Uvarint(uint64(in.Links))
	encSlot(e, in.Dir)
	e.Bool(in.Staged)
}

func decInfo(d *Dec) plan.IDInfo {
	var in plan.IDInfo
	in.Exists = d.Bool()
	in.Kind = tree.Kind(d.Uvarint())
	in.Links = int(d.Uint32())
	in.Dir = decSlot(d)
	in.Staged = d.Bool()
	return in
}

// Apply carries entry operations, applied in order.
type Apply struct{ Ops []plan.Op }

func (*Apply) Type() Type { return TApply }
func (m *Apply) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Ops)))
	for _, op := range m.Ops {
		e.Uvarint(uint64(op.Kind))
		encID(e, op.ID)
		encSlot(e, op.From)
		encSlot(e, op.To)
		e.Bool(op.Entry != nil)
		if op.Entry != nil {
			encEntry(e, op.Entry)
		}
	}
}
func (m *Apply) Decode(d *Dec) {
	n := d.Len(maxItems, 6)
	m.Ops = make([]plan.Op, n)
	for i := range m.Ops {
		op := &m.Ops[i]
		k := d.Uvarint()
		if k == 0 || k > uint64(plan.PurgeStrays) {
			d.fail("op kind")
		}
		op.Kind = plan.Kind(k)
		if needsID(op.Kind) {
			op.ID = decReqID(d)
		} else {
			op.ID = decID(d)
		}
		op.From = decSlot(d)
		op.To = decSlot(d)
		if d.Bool() {
			op.Entry = decEntry(d)
		}
	}
}

// OpError is one failed operation.
type OpError struct {
	Index int // index of the op (or item) in its request
	ID    fileid.ID
	Path  string // secondary path, for messages
	Errno uint32 // 0 when not a system error
	Msg   string
}

func (o OpError) Error() string { return o.Msg }

func encErrs(e *Enc, errs []OpError) {
	e.Uvarint(uint64(len(errs)))
	for _, x := range errs {
		e.Uvarint(uint64(x.Index))
		encID(e, x.ID)
		e.String(x.Path)
		e.Uvarint(uint64(x.Errno))
		e.String(x.Msg)
	}
}

func decErrs(d *Dec) []OpError {
	n := d.Len(maxItems, 5)
	if n == 0 {
		return nil
	}
	errs := make([]OpError, n)
	for i := range errs {
		errs[i].Index = int(d.Uint32())
		errs[i].ID = decID(d)
		errs[i].Path = d.String()
		errs[i].Errno = d.Uint32()
		errs[i].Msg = d.String()
	}
	return errs
}

// ApplyOK answers an Apply with the failed ops (empty: all applied).
type ApplyOK struct{ Errors []OpError }

func (*ApplyOK) Type() Type      { return TApplyOK }
func (m *ApplyOK) Encode(e *Enc) { encErrs(e, m.Errors) }
func (m *ApplyOK) Decode(d *Dec) { m.Errors = decErrs(d) }

// FileMode says how the secondary installs content.
type FileMode uint8

// File modes.
const (
	FileNew     FileMode = iota + 1 // create the file and link it at Slots
	FileReplace                     // new content for an existing ID
)

// PutFile carries (part of) a file's whole content. A file may span several
// frames with the same Stream; the last one has Last set and the SHA-256 of
// the whole content.
type PutFile struct {
	Stream uint64
	Mode   FileMode
	Entry  *tree.Entry // kind, meta, size of the primary's file
	Slots  []tree.Slot // FileNew: where to link it; FileReplace: a hint where it is
	Xattrs []Xattr     // applied with the content (FileNew)
	Offset int64
	Data   []byte
	Sparse bool // Data is empty: a hole up to Offset (for sparse files)
	Last   bool
	Sum    [32]byte
}

func (*PutFile) Type() Type { return TPutFile }
func (m *PutFile) Encode(e *Enc) {
	e.Uvarint(m.Stream)
	e.Uvarint(uint64(m.Mode))
	first := m.Entry != nil
	e.Bool(first)
	if first {
		encEntry(e, m.Entry)
		e.Uvarint(uint64(len(m.Slots)))
		for _, s := range m.Slots {
			encSlot(e, s)
		}
		encXattrs(e, m.Xattrs)
	}
	e.Varint(m.Offset)
	e.Bytes(m.Data)
	e.Bool(m.Sparse)
	e.Bool(m.Last)
	if m.Last {
		e.B = append(e.B, m.Sum[:]...)
	}
}
func (m *PutFile) Decode(d *Dec) {
	m.Stream = d.Uvarint()
	m.Mode = FileMode(d.Uvarint())
	if m.Mode != FileNew && m.Mode != FileReplace {
		d.fail("file mode")
	}
	if d.Bool() {
		m.Entry = decEntry(d)
		if m.Entry.ID == "" {
			d.fail("file id (empty) in a file's first frame")
		}
		n := d.Len(maxItems, 2)
		m.Slots = make([]tree.Slot, n)
		for i := range m.Slots {
			m.Slots[i] = decSlot(d)
		}
		m.Xattrs = decXattrs(d)
	}
	m.Offset = d.Varint()
	m.Data = d.Bytes()
	m.Sparse = d.Bool()
	m.Last = d.Bool()
	if m.Last && d.Err == nil {
		if len(d.B) < 32 {
			d.fail("checksum")
			return
		}
		copy(m.Sum[:], d.B[:32])
		d.B = d.B[32:]
	}
}

// FileOK answers the last frame of a PutFile or Delta stream.
type FileOK struct {
	T      Type
	Stream uint64
	Err    *OpError
	Bytes  int64 // bytes written on the secondary
}

func (m *FileOK) Type() Type { return m.T }
func (m *FileOK) Encode(e *Enc) {
	e.Uvarint(m.Stream)
	e.Varint(m.Bytes)
	if m.Err != nil {
		encErrs(e, []OpError{*m.Err})
	} else {
		encErrs(e, nil)
	}
}
func (m *FileOK) Decode(d *Dec) {
	m.Stream = d.Uvarint()
	m.Bytes = d.Varint()
	if errs := decErrs(d); len(errs) > 0 {
		m.Err = &errs[0]
	}
}

// Sig asks for the block signature of the secondary's copy of ID.
type Sig struct {
	ID   fileid.ID
	Hint tree.Slot
}

func (*Sig) Type() Type      { return TSig }
func (m *Sig) Encode(e *Enc) { encID(e, m.ID); encSlot(e, m.Hint) }
func (m *Sig) Decode(d *Dec) { m.ID = decReqID(d); m.Hint = decSlot(d) }

// SigOK carries a signature (delta.Signature wire form); Missing means the
// secondary has no copy (send the whole file).
type SigOK struct {
	Missing   bool
	Size      int64
	Mtime     int64
	Signature []byte
}

func (*SigOK) Type() Type { return TSigOK }
func (m *SigOK) Encode(e *Enc) {
	e.Bool(m.Missing)
	e.Varint(m.Size)
	e.Varint(m.Mtime)
	e.Bytes(m.Signature)
}
func (m *SigOK) Decode(d *Dec) {
	m.Missing = d.Bool()
	m.Size = d.Varint()
	m.Mtime = d.Varint()
	m.Signature = d.Bytes()
}

// Delta carries part of a delta (delta wire encoding) against the
// signature the secondary sent for ID; frames of one file share a Stream.
type Delta struct {
	Stream uint64
	Entry  *tree.Entry // first frame only
	Hint   tree.Slot   // first frame only
	Chunk  []byte
	Last   bool
}

func (*Delta) Type() Type { return TDelta }
func (m *Delta) Encode(e *Enc) {
	e.Uvarint(m.Stream)
	e.Bool(m.Entry != nil)
	if m.Entry != nil {
		encEntry(e, m.Entry)
		encSlot(e, m.Hint)
	}
	e.Bytes(m.Chunk)
	e.Bool(m.Last)
}
func (m *Delta) Decode(d *Dec) {
	m.Stream = d.Uvarint()
	if d.Bool() {
		m.Entry = decEntry(d)
		if m.Entry.ID == "" {
			d.fail("file id (empty) in a delta's first frame")
		}
		m.Hint = decSlot(d)
	}
	m.Chunk = d.Bytes()
	m.Last = d.Bool()
}

// MetaItem sets one file's metadata.
type MetaItem struct {
	Entry     *tree.Entry // ID, kind, meta (mode, owner, times)
	Hint      tree.Slot
	SetXattrs bool // replace the synced xattr namespaces with Xattrs
	Xattrs    []Xattr
	SkipOwner bool
	SkipTimes bool
}

// Meta carries metadata items.
type Meta struct{ Items []MetaItem }

func (*Meta) Type() Type { return TMeta }
func (m *Meta) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Items)))
	for _, it := range m.Items {
		encEntry(e, it.Entry)
		encSlot(e, it.Hint)
		e.Bool(it.SetXattrs)
		encXattrs(e, it.Xattrs)
		e.Bool(it.SkipOwner)
		e.Bool(it.SkipTimes)
	}
}
func (m *Meta) Decode(d *Dec) {
	n := d.Len(maxItems, 8)
	m.Items = make([]MetaItem, n)
	for i := range m.Items {
		it := &m.Items[i]
		it.Entry = decEntry(d)
		if it.Entry.ID == "" {
			d.fail("file id (empty) in a metadata item")
		}
		it.Hint = decSlot(d)
		it.SetXattrs = d.Bool()
		it.Xattrs = decXattrs(d)
		it.SkipOwner = d.Bool()
		it.SkipTimes = d.Bool()
	}
}

// MetaOK answers Meta with the failed items.
type MetaOK struct{ Errors []OpError }

func (*MetaOK) Type() Type      { return TMetaOK }
func (m *MetaOK) Encode(e *Enc) { encErrs(e, m.Errors) }
func (m *MetaOK) Decode(d *Dec) { m.Errors = decErrs(d) }

// StimeGet asks for the stime the secondary stored.
type StimeGet struct{}

func (*StimeGet) Type() Type  { return TStimeGet }
func (*StimeGet) Encode(*Enc) {}
func (*StimeGet) Decode(*Dec) {}

// StimeOK carries a stime (ns; 0 = none).
type StimeOK struct{ Stime int64 }

func (*StimeOK) Type() Type      { return TStimeOK }
func (m *StimeOK) Encode(e *Enc) { e.Varint(m.Stime) }
func (m *StimeOK) Decode(d *Dec) { m.Stime = d.Varint() }

// StimeSet makes everything applied so far durable (syncfs) and then
// records the stime; answered by StimeOK.
type StimeSet struct{ Stime int64 }

func (*StimeSet) Type() Type      { return TStimeSet }
func (m *StimeSet) Encode(e *Enc) { e.Varint(m.Stime) }
func (m *StimeSet) Decode(d *Dec) { m.Stime = d.Varint() }

// Ping is a keepalive; answered by Pong.
type Ping struct{}

func (*Ping) Type() Type  { return TPing }
func (*Ping) Encode(*Enc) {}
func (*Ping) Decode(*Dec) {}

// Pong answers Ping.
type Pong struct{}

func (*Pong) Type() Type  { return TPong }
func (*Pong) Encode(*Enc) {}
func (*Pong) Decode(*Dec) {}

// Limbo removes staged IDs the primary no longer has (Remove) and returns
// what stays staged.
type Limbo struct{ Remove []fileid.ID }

func (*Limbo) Type() Type      { return TLimbo }
func (m *Limbo) Encode(e *Enc) { encIDs(e, m.Remove) }
func (m *Limbo) Decode(d *Dec) { m.Remove = decIDs(d) }

// LimboOK lists the IDs still staged.
type LimboOK struct{ Staged []fileid.ID }

func (*LimboOK) Type() Type      { return TLimboOK }
func (m *LimboOK) Encode(e *Enc) { encIDs(e, m.Staged) }
func (m *LimboOK) Decode(d *Dec) { m.Staged = decIDs(d) }

// Hash asks for content digests of the secondary's copies (for verify).
type Hash struct{ IDs []fileid.ID }

func (*Hash) Type() Type      { return THash }
func (m *Hash) Encode(e *Enc) { encIDs(e, m.IDs) }
func (m *Hash) Decode(d *Dec) { m.IDs = decIDs(d) }

// HashOK carries 32-byte digests in the order asked (zero when missing).
type HashOK struct{ Sums [][32]byte }

func (*HashOK) Type() Type { return THashOK }
func (m *HashOK) Encode(e *Enc) {
	e.Uvarint(uint64(len(m.Sums)))
	for _, s := range m.Sums {
		e.B = append(e.B, s[:]...)
	}
}
func (m *HashOK) Decode(d *Dec) {
	n := d.Len(maxItems, 32)
	m.Sums = make([][32]byte, n)
	for i := range m.Sums {
		copy(m.Sums[i][:], d.B[:32])
		d.B = d.B[32:]
	}
}

// Bye ends a session cleanly.
type Bye struct{}

func (*Bye) Type() Type  { return TBye }
func (*Bye) Encode(*Enc) {}
func (*Bye) Decode(*Dec) {}
