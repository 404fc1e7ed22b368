package plan

// An in-memory model of a georep tree, used both as the primary (mutated the
// way a user would, recording the dirty slots a journal would record) and as
// the secondary (mutated only by applying a Plan, with every precondition of
// every operation checked strictly, so a mis-ordered or wrong plan fails).

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

const rootID fileid.ID = "root"

// node is one file of the model. Unknown entries (made by someone else than
// georep, on the secondary only) have a private key starting with '?' and
// known == false.
type node struct {
	id     fileid.ID
	known  bool
	kind   tree.Kind
	target string
	// Directories: the one slot the directory sits at, when placed.
	slot   tree.Slot
	placed bool
	// Non-directories: the links in the tree.
	links map[tree.Slot]bool
	// A directory in the staging area, or one link of a non-directory held
	// there (the staging area holds entries by ID: one per ID).
	staged bool
}

type model struct {
	nodes map[fileid.ID]*node
	slots map[tree.Slot]fileid.ID // slot -> node key
	dirty map[tree.Slot]bool      // primary: slots touched by mutations
	next  int                     // primary: ID counter; secondary: unknown-key counter
}

func newModel() *model {
	m := &model{nodes: map[fileid.ID]*node{}, slots: map[tree.Slot]fileid.ID{}, dirty: map[tree.Slot]bool{}}
	m.nodes[rootID] = &node{id: rootID, known: true, kind: tree.KindDir}
	return m
}

func (m *model) clone() *model {
	c := &model{nodes: map[fileid.ID]*node{}, slots: maps.Clone(m.slots), dirty: map[tree.Slot]bool{}, next: m.next}
	for k, n := range m.nodes {
		nn := *n
		nn.links = maps.Clone(n.links)
		c.nodes[k] = &nn
	}
	return c
}

func isDir(k tree.Kind) bool { return k == tree.KindDir }

// --- naming and paths -------------------------------------------------------

// path renders a slot as a path from the root (for messages).
func (m *model) path(s tree.Slot) string {
	parts := []string{s.Name}
	p := s.Parent
	for i := 0; p != rootID && i < 64; i++ {
		n := m.nodes[p]
		switch {
		case n == nil:
			return fmt.Sprintf("<gone %s>/%s", p, strings.Join(parts, "/"))
		case n.staged:
			return fmt.Sprintf("<staged %s>/%s", p, strings.Join(parts, "/"))
		case !n.placed:
			return fmt.Sprintf("<unplaced %s>/%s", p, strings.Join(parts, "/"))
		}
		parts = append([]string{n.slot.Name}, parts...)
		p = n.slot.Parent
	}
	return strings.Join(parts, "/")
}

// resolve returns the slot of a path like "A/B/f" (the parent must exist).
func (m *model) resolve(path string) (tree.Slot, error) {
	parts := strings.Split(path, "/")
	parent := rootID
	for _, name := range parts[:len(parts)-1] {
		k, ok := m.slots[tree.Slot{Parent: parent, Name: name}]
		if !ok || !isDir(m.nodes[k].kind) {
			return tree.Slot{}, fmt.Errorf("%s: no directory %q", path, name)
		}
		parent = k
	}
	return tree.Slot{Parent: parent, Name: parts[len(parts)-1]}, nil
}

func (m *model) mustResolve(path string) tree.Slot {
	s, err := m.resolve(path)
	if err != nil {
		panic(err)
	}
	return s
}

// children returns the slots whose parent is the node key p, sorted.
func (m *model) children(p fileid.ID) []tree.Slot {
	var out []tree.Slot
	for s := range m.slots {
		if s.Parent == p {
			out = append(out, s)
		}
	}
	SortSlots(out)
	return out
}

// reachable returns every slot reachable from the root (staging excluded),
// in a deterministic order.
func (m *model) reachable() []tree.Slot {
	kids := map[fileid.ID][]tree.Slot{}
	for s := range m.slots {
		kids[s.Parent] = append(kids[s.Parent], s)
	}
	out := make([]tree.Slot, 0, len(m.slots))
	var walk func(p fileid.ID, depth int)
	walk = func(p fileid.ID, depth int) {
		if depth > 1000 {
			panic("cycle in model")
		}
		cs := kids[p]
		slices.SortFunc(cs, func(a, b tree.Slot) int { return strings.Compare(a.Name, b.Name) })
		for _, s := range cs {
			out = append(out, s)
			if n := m.nodes[m.slots[s]]; isDir(n.kind) {
				walk(n.id, depth+1)
			}
		}
	}
	walk(rootID, 0)
	return out
}

func (m *model) dirs() []fileid.ID {
	var out []fileid.ID
	for k, n := range m.nodes {
		if n.known && isDir(n.kind) && (k == rootID || n.placed) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// depth of a placed directory (root = 0).
func (m *model) depth(d fileid.ID) int {
	n := 0
	for d != rootID {
		d = m.nodes[d].slot.Parent
		n++
	}
	return n
}

// inside reports whether the directory key d is a (reflexive) descendant of
// a: walking up from d through placed directories reaches a.
func (m *model) inside(d, a fileid.ID) bool {
	for i := 0; i < 10000; i++ {
		if d == a {
			return true
		}
		n := m.nodes[d]
		if d == rootID || n == nil || !n.placed {
			return false
		}
		d = n.slot.Parent
	}
	panic("cycle in model")
}

// --- building ----------------------------------------------------------------

// ent describes one entry of a test tree: a path, its kind and its ID. An ID
// used twice (non-directory) makes a hardlink. A symlink's target is its ID.
type ent struct {
	path string
	kind tree.Kind
	id   fileid.ID
}

const (
	kF = tree.KindRegular
	kD = tree.KindDir
	kL = tree.KindSymlink
	kP = tree.KindFIFO
)

func buildModel(ents ...ent) *model {
	m := newModel()
	for _, e := range ents {
		if err := m.put(m.mustResolve(e.path), e.kind, e.id); err != nil {
			panic(err)
		}
	}
	return m
}

// put places id (new, or an existing non-directory for a hardlink) at a free
// slot. It is the primary's create and the builder's primitive; it records
// the slot as dirty.
func (m *model) put(s tree.Slot, kind tree.Kind, id fileid.ID) error {
	if _, busy := m.slots[s]; busy {
		return fmt.Errorf("put %s: slot busy", m.path(s))
	}
	if p := m.nodes[s.Parent]; p == nil || !isDir(p.kind) {
		return fmt.Errorf("put %s: no parent directory", m.path(s))
	}
	n := m.nodes[id]
	switch {
	case n == nil:
		n = &node{id: id, known: true, kind: kind, target: "->" + string(id)}
		if !isDir(kind) {
			n.links = map[tree.Slot]bool{}
		}
		m.nodes[id] = n
	case isDir(kind) || n.kind != kind:
		return fmt.Errorf("put %s: id %s exists", m.path(s), id)
	}
	if isDir(kind) {
		n.slot, n.placed = s, true
	} else {
		n.links[s] = true
	}
	m.slots[s] = id
	m.dirty[s] = true
	return nil
}

// addUnknown puts an entry georep does not know at a free slot (secondary).
func (m *model) addUnknown(s tree.Slot, kind tree.Kind) fileid.ID {
	m.next++
	k := fileid.ID(fmt.Sprintf("?%d", m.next))
	n := &node{id: k, kind: kind}
	if isDir(kind) {
		n.slot, n.placed = s, true
	} else {
		n.links = map[tree.Slot]bool{s: true}
	}
	if _, busy := m.slots[s]; busy {
		panic("addUnknown: slot busy")
	}
	m.nodes[k] = n
	m.slots[s] = k
	return k
}

// newID allocates a fresh primary ID (never reused).
func (m *model) newID(kind tree.Kind) fileid.ID {
	m.next++
	p := map[tree.Kind]string{kF: "f", kD: "d", kL: "l", kP: "p"}[kind]
	return fileid.ID(fmt.Sprintf("%s%d", p, m.next))
}

// --- primary mutations (record dirty slots like a journal) ------------------

// rm removes the entry at s, recursively for a directory (rm -rf). Every
// removed slot is dirty. A non-directory left without links is gone.
func (m *model) rm(s tree.Slot) {
	k, ok := m.slots[s]
	if !ok {
		panic("rm: empty slot " + m.path(s))
	}
	n := m.nodes[k]
	if isDir(n.kind) {
		for _, c := range m.children(k) {
			m.rm(c)
		}
		delete(m.nodes, k)
	} else {
		delete(n.links, s)
		if len(n.links) == 0 {
			delete(m.nodes, k)
		}
	}
	delete(m.slots, s)
	m.dirty[s] = true
}

// rename is rename(2): the caller has checked POSIX validity (dst free, or a
// non-directory replaced by a non-directory, or an empty directory replaced
// by a directory; no directory into its own subtree).
func (m *model) rename(src, dst tree.Slot) {
	k := m.slots[src]
	n := m.nodes[k]
	if old, busy := m.slots[dst]; busy {
		if old == k {
			return // two links of the same file: rename does nothing
		}
		m.rm(dst)
	}
	delete(m.slots, src)
	if isDir(n.kind) {
		n.slot = dst
	} else {
		delete(n.links, src)
		n.links[dst] = true
	}
	m.slots[dst] = k
	m.dirty[src], m.dirty[dst] = true, true
}

// Path-based helpers for the table tests.
func (m *model) create(path string, kind tree.Kind, id fileid.ID) {
	if err := m.put(m.mustResolve(path), kind, id); err != nil {
		panic(err)
	}
}
func (m *model) rmPath(path string) { m.rm(m.mustResolve(path)) }
func (m *model) mv(from, to string) {
	src, dst := m.mustResolve(from), m.mustResolve(to)
	if n := m.nodes[m.slots[src]]; isDir(n.kind) && m.inside(dst.Parent, n.id) {
		panic("mv into own subtree")
	}
	m.rename(src, dst)
}
func (m *model) ln(from, to string) {
	src := m.mustResolve(from)
	k := m.slots[src]
	if err := m.put(m.mustResolve(to), m.nodes[k].kind, k); err != nil {
		panic(err)
	}
}

func (m *model) dirtySlots() []tree.Slot {
	out := slices.Collect(maps.Keys(m.dirty))
	SortSlots(out)
	return out
}

// --- planner input ------------------------------------------------------------

func (m *model) entry(s tree.Slot) *tree.Entry {
	k, ok := m.slots[s]
	if !ok {
		return nil
	}
	n := m.nodes[k]
	e := &tree.Entry{Slot: s, Kind: n.kind, Nlink: uint32(len(n.links))}
	if n.known {
		e.ID = k
	}
	if n.kind == tree.KindSymlink {
		e.Target = n.target
	}
	return e
}

func (m *model) info(id fileid.ID) IDInfo {
	n := m.nodes[id]
	if n == nil || !n.known {
		return IDInfo{}
	}
	in := IDInfo{Exists: true, Kind: n.kind, Links: len(n.links), Staged: n.staged}
	if isDir(n.kind) && n.placed {
		in.Dir, in.Links = n.slot, 1
	}
	return in
}

// makeInput builds the planner input for the dirty slots: Want from the
// primary, Have from the secondary, IDs from the secondary. Slots are
// deduplicated and kept in the given order.
func makeInput(prim, sec *model, dirty []tree.Slot, alive func(fileid.ID) bool) Input {
	in := Input{Want: map[tree.Slot]*tree.Entry{}, Have: map[tree.Slot]*tree.Entry{},
		IDs: map[fileid.ID]IDInfo{}, Alive: alive}
	seen := map[tree.Slot]bool{}
	for _, s := range dirty {
		if seen[s] {
			continue
		}
		seen[s] = true
		in.Slots = append(in.Slots, s)
		if w := prim.entry(s); w != nil {
			in.Want[s] = w
			in.IDs[w.ID] = sec.info(w.ID)
		}
		if h := sec.entry(s); h != nil {
			in.Have[s] = h
			if h.ID != "" {
				in.IDs[h.ID] = sec.info(h.ID)
			}
		}
	}
	return in
}

// journalInput: the primary's dirty slots; Alive answers from the primary.
func journalInput(prim, sec *model) Input {
	return makeInput(prim, sec, prim.dirtySlots(), func(id fileid.ID) bool { return prim.nodes[id] != nil })
}

// crawlInput: every slot of both trees (except inside unknown directories,
// which the secondary cannot name); Alive is false for everything.
func crawlInput(prim, sec *model) Input {
	var all []tree.Slot
	all = append(all, prim.reachable()...)
	for _, s := range sec.reachable() {
		if p := sec.nodes[s.Parent]; p.known {
			all = append(all, s)
		}
	}
	SortSlots(all)
	return makeInput(prim, sec, all, nil)
}

// --- applying a plan on the secondary ---------------------------------------

func (m *model) opString(op Op) string {
	var b strings.Builder
	b.WriteString(op.Kind.String())
	if op.ID != "" {
		fmt.Fprintf(&b, " %s", op.ID)
	}
	if op.From != (tree.Slot{}) {
		fmt.Fprintf(&b, " from=%s", m.path(op.From))
	}
	if op.To != (tree.Slot{}) {
		fmt.Fprintf(&b, " to=%s", m.path(op.To))
	}
	if op.Entry != nil {
		fmt.Fprintf(&b, " (%s)", op.Entry.Kind)
	}
	return b.String()
}

func dumpPlan(p Plan) string {
	var b strings.Builder
	for i, op := range p.Ops {
		fmt.Fprintf(&b, "  %2d %s %s from=%v to=%v", i, op.Kind, op.ID, op.From, op.To)
		if op.Entry != nil {
			fmt.Fprintf(&b, " kind=%s", op.Entry.Kind)
		}
		b.WriteByte('\n')
	}
	for _, nf := range p.NewFiles {
		fmt.Fprintf(&b, "  NEWFILE %s at %v\n", nf.Entry.ID, nf.Slots)
	}
	if len(p.Limbo) > 0 {
		fmt.Fprintf(&b, "  limbo %v\n", p.Limbo)
	}
	return b.String()
}

func (m *model) dump() string {
	var b strings.Builder
	for _, s := range m.reachable() {
		n := m.nodes[m.slots[s]]
		id := n.id
		fmt.Fprintf(&b, "  %-20s %-8s %s\n", m.path(s), n.kind, id)
	}
	for k, n := range m.nodes {
		if n.staged {
			fmt.Fprintf(&b, "  <staged> %s %s\n", n.kind, k)
		}
	}
	return b.String()
}

// free checks that To is free and that its parent is an existing known
// directory (in place or staged).
func (m *model) checkTo(to tree.Slot) error {
	if k, busy := m.slots[to]; busy {
		return fmt.Errorf("slot %s is busy (holds %s)", m.path(to), k)
	}
	p := m.nodes[to.Parent]
	if p == nil || !p.known || !isDir(p.kind) {
		return fmt.Errorf("parent %s of %s does not exist", to.Parent, m.path(to))
	}
	return nil
}

// removeTree removes the directory key d and everything inside it. A known
// non-directory inside only loses that link (the secondary's index keeps it).
func (m *model) removeTree(d fileid.ID) {
	for _, c := range m.children(d) {
		k := m.slots[c]
		n := m.nodes[k]
		delete(m.slots, c)
		switch {
		case isDir(n.kind):
			n.placed = false
			m.removeTree(k)
		case n.known:
			delete(n.links, c)
		default:
			delete(m.nodes, k)
		}
	}
	n := m.nodes[d]
	if n.placed {
		delete(m.slots, n.slot)
	}
	delete(m.nodes, d)
}

var createKind = map[Kind]func(tree.Kind) bool{
	Mkdir:   func(k tree.Kind) bool { return k == tree.KindDir },
	Symlink: func(k tree.Kind) bool { return k == tree.KindSymlink },
	Mknod: func(k tree.Kind) bool {
		return k == tree.KindFIFO || k == tree.KindChar || k == tree.KindBlock || k == tree.KindSocket
	},
}

// applyOp applies one operation with strict preconditions.
func (m *model) applyOp(op Op) error {
	switch op.Kind {
	case Stage:
		k, ok := m.slots[op.From]
		if !ok {
			return fmt.Errorf("nothing at %s", m.path(op.From))
		}
		n := m.nodes[k]
		if op.ID == "" && n.known {
			return fmt.Errorf("%s holds known %s, not an unknown entry", m.path(op.From), k)
		}
		if op.ID != "" && op.ID != k {
			return fmt.Errorf("%s holds %s, not %s", m.path(op.From), k, op.ID)
		}
		if n.staged {
			return fmt.Errorf("%s is already staged (staging holds one entry per ID)", k)
		}
		delete(m.slots, op.From)
		if isDir(n.kind) {
			n.placed = false
		} else {
			delete(n.links, op.From)
		}
		n.staged = true
	case Move:
		if err := m.checkTo(op.To); err != nil {
			return err
		}
		n := m.nodes[op.ID]
		if op.ID == "" || n == nil || !n.known {
			return fmt.Errorf("id %q does not exist", op.ID)
		}
		if !isDir(n.kind) {
			if !n.staged {
				return fmt.Errorf("non-directory %s is not staged", op.ID)
			}
			n.staged = false
			n.links[op.To] = true
			m.slots[op.To] = op.ID
			return nil
		}
		if !n.staged && !n.placed {
			return fmt.Errorf("directory %s is neither staged nor placed", op.ID)
		}
		// To's parent must not be inside the directory being moved.
		for p := op.To.Parent; ; {
			if p == op.ID {
				return fmt.Errorf("moving directory %s into its own subtree", op.ID)
			}
			pn := m.nodes[p]
			if p == rootID || pn.staged || !pn.placed {
				break
			}
			p = pn.slot.Parent
		}
		if n.placed {
			delete(m.slots, n.slot)
		}
		n.staged, n.placed, n.slot = false, true, op.To
		m.slots[op.To] = op.ID
	case Link:
		if err := m.checkTo(op.To); err != nil {
			return err
		}
		n := m.nodes[op.ID]
		if op.ID == "" || n == nil || !n.known || isDir(n.kind) {
			return fmt.Errorf("no non-directory %q to link", op.ID)
		}
		n.links[op.To] = true
		m.slots[op.To] = op.ID
	case Mkdir, Symlink, Mknod:
		if err := m.checkTo(op.To); err != nil {
			return err
		}
		if op.Entry == nil || op.Entry.ID != op.ID || !createKind[op.Kind](op.Entry.Kind) {
			return fmt.Errorf("bad entry %+v", op.Entry)
		}
		if op.ID == "" || m.nodes[op.ID] != nil {
			return fmt.Errorf("id %q already exists", op.ID)
		}
		n := &node{id: op.ID, known: true, kind: op.Entry.Kind, target: op.Entry.Target}
		if isDir(n.kind) {
			n.slot, n.placed = op.To, true
		} else {
			n.links = map[tree.Slot]bool{op.To: true}
		}
		m.nodes[op.ID] = n
		m.slots[op.To] = op.ID
	case Adopt:
		k, ok := m.slots[op.To]
		if !ok {
			return fmt.Errorf("nothing at %s to adopt", m.path(op.To))
		}
		n := m.nodes[k]
		if n.known {
			return fmt.Errorf("%s holds known %s", m.path(op.To), k)
		}
		if op.Entry == nil || op.Entry.ID != op.ID || op.Entry.Kind != n.kind {
			return fmt.Errorf("adopting a %s as %+v", n.kind, op.Entry)
		}
		if op.ID == "" || m.nodes[op.ID] != nil {
			return fmt.Errorf("id %q already exists", op.ID)
		}
		for _, c := range m.children(k) { // its contents stay where they are
			ck := m.slots[c]
			delete(m.slots, c)
			nc := tree.Slot{Parent: op.ID, Name: c.Name}
			m.slots[nc] = ck
			if cn := m.nodes[ck]; isDir(cn.kind) {
				cn.slot = nc
			} else {
				delete(cn.links, c)
				cn.links[nc] = true
			}
		}
		delete(m.nodes, k)
		n.id, n.known = op.ID, true
		if !isDir(n.kind) {
			n.links = map[tree.Slot]bool{op.To: true}
		}
		m.nodes[op.ID] = n
		m.slots[op.To] = op.ID
	case Unlink:
		k, ok := m.slots[op.From]
		if !ok || k != op.ID || op.ID == "" {
			return fmt.Errorf("%s holds %q, not %s", m.path(op.From), k, op.ID)
		}
		n := m.nodes[k]
		if isDir(n.kind) {
			return fmt.Errorf("unlink of directory %s", k)
		}
		delete(n.links, op.From)
		delete(m.slots, op.From)
	case RemoveTree:
		n := m.nodes[op.ID]
		if op.ID == "" || op.ID == rootID || n == nil || !n.known || !isDir(n.kind) {
			return fmt.Errorf("no directory %q to remove", op.ID)
		}
		m.removeTree(op.ID)
	case Drop:
		n := m.nodes[op.ID]
		if op.ID == "" || n == nil || !n.known || isDir(n.kind) {
			return fmt.Errorf("no non-directory %q to drop", op.ID)
		}
		if len(n.links) > 0 || n.staged {
			return fmt.Errorf("drop of %s which still has %d link(s) (staged=%v)", op.ID, len(n.links), n.staged)
		}
		delete(m.nodes, op.ID)
	case PurgeStrays:
		for k, n := range m.nodes {
			if !n.known && n.staged {
				m.purge(k)
			}
		}
	default:
		return fmt.Errorf("unknown op kind %d", op.Kind)
	}
	return nil
}

func (m *model) purge(k fileid.ID) {
	n := m.nodes[k]
	if isDir(n.kind) {
		for _, c := range m.children(k) {
			ck := m.slots[c]
			cn := m.nodes[ck]
			delete(m.slots, c)
			switch {
			case isDir(cn.kind):
				m.purge(ck)
			case cn.known:
				delete(cn.links, c)
			default:
				delete(m.nodes, ck)
			}
		}
	}
	delete(m.nodes, k)
}

// apply applies the plan: ops in order, then the new files.
func (m *model) apply(p Plan) error {
	for i, op := range p.Ops {
		if err := m.applyOp(op); err != nil { // a failing op changes nothing
			return fmt.Errorf("op %d %s: %v", i, m.opString(op), err)
		}
	}
	for _, nf := range p.NewFiles {
		e := nf.Entry
		if e == nil || e.Kind != tree.KindRegular || e.ID == "" {
			return fmt.Errorf("new file %+v is not a regular file", e)
		}
		if m.nodes[e.ID] != nil {
			return fmt.Errorf("new file %s already exists", e.ID)
		}
		if len(nf.Slots) == 0 {
			return fmt.Errorf("new file %s has no slot", e.ID)
		}
		n := &node{id: e.ID, known: true, kind: tree.KindRegular, links: map[tree.Slot]bool{}}
		m.nodes[e.ID] = n
		for _, s := range nf.Slots {
			if err := m.checkTo(s); err != nil {
				return fmt.Errorf("new file %s: %v", e.ID, err)
			}
			n.links[s] = true
			m.slots[s] = e.ID
		}
	}
	return nil
}

// --- comparing ----------------------------------------------------------------

type seen struct {
	id   fileid.ID // "" for unknown
	kind tree.Kind
}

func (m *model) view() map[tree.Slot]seen {
	out := map[tree.Slot]seen{}
	for _, s := range m.reachable() {
		n := m.nodes[m.slots[s]]
		v := seen{kind: n.kind}
		if n.known {
			v.id = n.id
		}
		out[s] = v
	}
	return out
}

// equal compares the whole trees (slot -> ID and kind), ignoring staging.
func equal(prim, sec *model) error {
	pv, sv := prim.view(), sec.view()
	var diffs []string
	for s, p := range pv {
		if q, ok := sv[s]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: secondary lacks %s %s", prim.path(s), p.kind, p.id))
		} else if p != q {
			diffs = append(diffs, fmt.Sprintf("%s: primary %s %s, secondary %s %q", prim.path(s), p.kind, p.id, q.kind, q.id))
		}
	}
	for s, q := range sv {
		if _, ok := pv[s]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: secondary has extra %s %q", sec.path(s), q.kind, q.id))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("trees differ:\n  %s", strings.Join(diffs, "\n  "))
}

// clean checks what the secondary keeps beside the tree after a plan: the
// staging area holds nothing but the plan's limbo directories, and no file
// the primary no longer has is left in the secondary's index.
func clean(prim, sec *model, p Plan) error {
	limbo := map[fileid.ID]bool{}
	for _, id := range p.Limbo {
		limbo[id] = true
	}
	var errs []string
	for k, n := range sec.nodes {
		switch {
		case n.staged && !n.known:
			errs = append(errs, fmt.Sprintf("stray %s (%s) left in staging", k, n.kind))
		case n.staged && !limbo[k]:
			errs = append(errs, fmt.Sprintf("%s %s left in staging", n.kind, k))
		case n.known && prim.nodes[k] == nil && !limbo[k]:
			errs = append(errs, fmt.Sprintf("%s %s, gone on the primary, still in the secondary's index", n.kind, k))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("secondary not clean:\n  %s", strings.Join(errs, "\n  "))
}

// --- one round -----------------------------------------------------------------

// check runs one round: plan in, apply it to sec, compare with prim, check
// identity preservation against before (the secondary before the round) and
// idempotence. It returns the plan.
func check(t testing.TB, prim, sec *model, in Input, ctx func() string) Plan {
	t.Helper()
	before := sec.clone()
	p := Make(in)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n%s\nprimary:\n%ssecondary before:\n%splan:\n%s", fmt.Sprintf(format, args...), ctx(),
			prim.dump(), before.dump(), dumpPlanPaths(before, p))
	}
	if err := sec.apply(p); err != nil {
		fail("apply: %v", err)
	}
	if err := equal(prim, sec); err != nil {
		fail("%v", err)
	}
	if err := clean(prim, sec, p); err != nil {
		fail("%v", err)
	}
	// Identity: an ID the secondary had and the primary still has is never
	// created again.
	for _, id := range createdIDs(p) {
		if n := before.nodes[id]; n != nil && n.known && prim.nodes[id] != nil {
			fail("identity lost: %s existed on the secondary and is created again", id)
		}
	}
	// Idempotence: the same slots, and every slot, plan to nothing.
	for _, again := range []Input{makeInput(prim, sec, in.Slots, in.Alive), crawlInput(prim, sec)} {
		if q := Make(again); len(q.Ops) != 0 || len(q.NewFiles) != 0 {
			fail("not idempotent: planning again gives\n%s", dumpPlan(q))
		}
	}
	return p
}

func dumpPlanPaths(m *model, p Plan) string {
	var b strings.Builder
	for i, op := range p.Ops {
		fmt.Fprintf(&b, "  %2d %s\n", i, m.opString(op))
	}
	for _, nf := range p.NewFiles {
		var ss []string
		for _, s := range nf.Slots {
			ss = append(ss, m.path(s))
		}
		fmt.Fprintf(&b, "  NEWFILE %s at %v\n", nf.Entry.ID, ss)
	}
	if len(p.Limbo) > 0 {
		fmt.Fprintf(&b, "  limbo %v\n", p.Limbo)
	}
	return b.String()
}

func createdIDs(p Plan) []fileid.ID {
	var out []fileid.ID
	for _, op := range p.Ops {
		switch op.Kind {
		case Mkdir, Symlink, Mknod, Adopt:
			out = append(out, op.ID)
		}
	}
	for _, nf := range p.NewFiles {
		out = append(out, nf.Entry.ID)
	}
	return out
}
