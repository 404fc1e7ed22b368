package plan

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// Adoption by path, on the model: the secondary holds the primary's tree
// (then perturbed) under no IDs (seeded), under dead IDs (another
// primary's index, a restored primary), or half of each; AdoptByPath and
// Make together must make it equal to the primary, keep the index clean,
// and never create what could be adopted.

type secondaryKind int

const (
	seededSecondary  secondaryKind = iota // cp -a: nothing known
	foreignSecondary                      // every ID dead (another primary's)
	partialSecondary                      // some forgotten, some dead, some known
	secondaryKinds
)

func (k secondaryKind) String() string { return [...]string{"seeded", "foreign", "partial"}[k] }

// forget makes node k of sec unknown (seeded) or known under a dead ID.
func (m *model) rekeyNode(k, nk fileid.ID, known bool) {
	n := m.nodes[k]
	delete(m.nodes, k)
	n.id, n.known = nk, known
	m.nodes[nk] = n
	for s, v := range m.slots {
		if v == k {
			m.slots[s] = nk
		}
	}
	if isDir(n.kind) {
		for _, c := range m.children(k) {
			ck := m.slots[c]
			delete(m.slots, c)
			nc := tree.Slot{Parent: nk, Name: c.Name}
			m.slots[nc] = ck
			if cn := m.nodes[ck]; isDir(cn.kind) {
				cn.slot = nc
			} else {
				delete(cn.links, c)
				cn.links[nc] = true
			}
		}
	}
}

// disguise turns sec's nodes (the root aside) into unknown or dead ones.
func disguise(c chooser, sec *model, kind secondaryKind) {
	var keys []fileid.ID
	for _, s := range sec.reachable() {
		if k := sec.slots[s]; k != rootID {
			keys = append(keys, k)
		}
	}
	done := map[fileid.ID]bool{}
	for _, k := range keys {
		if done[k] || sec.nodes[k] == nil {
			continue
		}
		done[k] = true
		n := sec.nodes[k]
		if !isDir(n.kind) && len(n.links) > 1 && kind != foreignSecondary {
			continue // the model's unknown entries have one link
		}
		mode := int(kind)
		if kind == partialSecondary {
			mode = c.intn(3)
		}
		switch mode {
		case 0:
			sec.next++
			sec.rekeyNode(k, fileid.ID(fmt.Sprintf("?s%d", sec.next)), false)
		case 1:
			sec.rekeyNode(k, "dead-"+k, true)
		}
	}
}

// listing is the secondary's whole listing as the agent sends it: unknown
// directories under stand-in IDs (plan.UnknownDir), entered too.
func listing(sec *model) []*tree.Entry {
	stand := map[fileid.ID]fileid.ID{}
	standIn := func(k fileid.ID) fileid.ID {
		if id, ok := stand[k]; ok {
			return id
		}
		id := UnknownDir(uint64(len(stand) + 1))
		stand[k] = id
		return id
	}
	var out []*tree.Entry
	for _, s := range sec.reachable() {
		e := sec.entry(s)
		n := sec.nodes[sec.slots[s]]
		if !n.known && isDir(n.kind) {
			e.ID = standIn(n.id)
		}
		if p := sec.nodes[s.Parent]; p != nil && !p.known {
			e.Parent = standIn(p.id)
		}
		out = append(out, e)
	}
	return out
}

// adoptInput is what the crawl (worker diff) builds: adoption first, then
// the planner's input from the adopted listing.
func adoptInput(prim, sec *model) (Adoption, Input) {
	want := map[tree.Slot]*tree.Entry{}
	for _, s := range prim.reachable() {
		want[s] = prim.entry(s)
	}
	var staged []fileid.ID
	for k, n := range sec.nodes {
		if n.known && n.staged {
			staged = append(staged, k)
		}
	}
	ad := AdoptByPath(want, listing(sec), staged, rootID)
	in := Input{Want: want, Have: map[tree.Slot]*tree.Entry{}, IDs: map[fileid.ID]IDInfo{}}
	seen := map[tree.Slot]bool{}
	for s := range want {
		seen[s] = true
		in.Slots = append(in.Slots, s)
	}
	for _, h := range ad.Have {
		in.Have[h.Slot] = h
		if !seen[h.Slot] {
			seen[h.Slot] = true
			in.Slots = append(in.Slots, h.Slot)
		}
		if h.ID == "" {
			continue
		}
		info := in.IDs[h.ID]
		info.Exists, info.Kind = true, h.Kind
		info.Links++
		if h.Kind == tree.KindDir {
			info.Dir = h.Slot
		}
		in.IDs[h.ID] = info
	}
	for _, h := range ad.Hidden {
		info := in.IDs[h.ID]
		info.Exists, info.Kind = true, h.Kind
		if h.Kind == tree.KindDir {
			info.Dir = h.Slot
		}
		in.IDs[h.ID] = info
	}
	SortSlots(in.Slots)
	return ad, in
}

// applyAdoption applies the adoption ops on the model: like Adopt, and a
// re-key (From set) of an entry known under a dead ID.
func (m *model) applyAdoption(op Op) error {
	k, ok := m.slots[op.To]
	if !ok {
		return fmt.Errorf("nothing at %s to adopt", m.path(op.To))
	}
	n := m.nodes[k]
	if n.known && op.From != op.To {
		if isDir(n.kind) || m.nodes[op.ID] != nil {
			return fmt.Errorf("%s holds known %s and the op is no re-key", m.path(op.To), k)
		}
		// The agent copies this link into an inode of its own.
		delete(n.links, op.To)
		m.nodes[op.ID] = &node{id: op.ID, known: true, kind: n.kind, target: n.target, links: map[tree.Slot]bool{op.To: true}}
		m.slots[op.To] = op.ID
		return nil
	}
	if op.Entry == nil || op.Entry.ID != op.ID || op.Entry.Kind != n.kind {
		return fmt.Errorf("adopting a %s as %+v", n.kind, op.Entry)
	}
	if m.nodes[op.ID] != nil {
		return fmt.Errorf("id %q already exists", op.ID)
	}
	m.rekeyNode(k, op.ID, true)
	return nil
}

func runAdoptCase(t testing.TB, c chooser, kind secondaryKind) {
	t.Helper()
	prim := newModel()
	genTree(c, prim, 1+c.intn(30))
	sec := prim.clone()
	disguise(c, sec, kind)
	pristine := c.intn(4) == 0
	var log []string
	if !pristine {
		perturb(c, sec)
		for range c.intn(10) {
			if d := mutate(c, prim); d != "" {
				log = append(log, d)
			}
		}
	}
	before := sec.clone()
	ad, in := adoptInput(prim, sec)
	p := Make(in)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s secondary: %s\nprimary ops:\n  %s\nprimary:\n%ssecondary before:\n%sadoption:\n%splan:\n%s", kind,
			fmt.Sprintf(format, args...), strings.Join(log, "\n  "), prim.dump(), before.dump(), dumpPlan(Plan{Ops: ad.Ops}), dumpPlan(p))
	}
	for i, op := range ad.Ops {
		if op.Kind != Adopt {
			fail("adoption op %d is %s", i, op.Kind)
		}
		if err := sec.applyAdoption(op); err != nil {
			fail("adoption op %d %s: %v", i, sec.opString(op), err)
		}
	}
	if err := sec.apply(p); err != nil {
		fail("apply: %v", err)
	}
	if err := equal(prim, sec); err != nil {
		fail("%v", err)
	}
	// What was left of a dead identity is gone from the index too.
	for k, n := range sec.nodes {
		if n.known && strings.HasPrefix(string(k), "dead-") && (n.placed || len(n.links) > 0) {
			fail("dead ID %s still in the tree", k)
		}
	}
	// An unperturbed copy: nothing is created, everything adopted.
	if pristine && (len(createdIDs(p)) != 0 || len(p.NewFiles) != 0) {
		fail("the secondary held the primary's tree, yet the plan creates %v", createdIDs(p))
	}
	// Idempotence: a second crawl plans nothing.
	ad2, in2 := adoptInput(prim, sec)
	if q := Make(in2); len(ad2.Ops) != 0 || len(q.Ops) != 0 || len(q.NewFiles) != 0 {
		fail("not idempotent: adopting again gives\n%s\nplanning again gives\n%s", dumpPlan(Plan{Ops: ad2.Ops}), dumpPlan(q))
	}
}

// TestAdoptByPathRandom: 3,000 random cases over seeded, foreign and
// partially indexed secondaries (GEOREP_PLAN_SEED=<seed> replays one).
func TestAdoptByPathRandom(t *testing.T) {
	base := seedFromEnv(t)
	cases := 1000
	if testing.Short() {
		cases = 200
	}
	if os.Getenv("GEOREP_PLAN_SEED") != "" {
		cases = 1
	}
	t.Logf("base seed %d", base)
	for i := range cases {
		seed := base + uint64(i)
		for k := range secondaryKinds {
			func() {
				defer func() {
					if t.Failed() {
						t.Logf("seed %d, %s secondary (rerun with GEOREP_PLAN_SEED=%d)", seed, k, seed)
					}
				}()
				runAdoptCase(t, randChooser{rand.New(rand.NewPCG(seed, uint64(k)+7))}, k)
			}()
		}
	}
}

// FuzzAdoptByPath drives the same cases from bytes.
func FuzzAdoptByPath(f *testing.F) {
	f.Add([]byte{0, 10, 3, 0, 0, 0, 1, 1, 2, 0, 4, 6, 0, 1, 5, 7})
	f.Add([]byte{1, 20, 0, 1, 1, 0, 2, 2, 4, 0, 0, 3, 1, 2, 6, 0, 0, 1})
	f.Add([]byte{2, 15, 9, 9, 3, 1, 0, 4, 4, 8, 8, 2, 2, 1, 3, 5, 5, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		runAdoptCase(t, &byteChooser{b: data[1:]}, secondaryKind(data[0]%byte(secondaryKinds)))
	})
}

// TestAdoptByPathDeep: an unknown directory three levels down is adopted
// with its content, an extra file inside it is left for the planner to
// stage, and a file whose size and mtime match keeps its old entry for
// the content decision.
func TestAdoptByPathDeep(t *testing.T) {
	root, d1, d2, f1 := fileid.ID("root"), fileid.ID("d1"), fileid.ID("d2"), fileid.ID("f1")
	want := map[tree.Slot]*tree.Entry{}
	add := func(parent fileid.ID, name string, id fileid.ID, k tree.Kind, size int64) {
		s := tree.Slot{Parent: parent, Name: name}
		want[s] = &tree.Entry{Slot: s, ID: id, Kind: k, Size: size, Meta: tree.Meta{Mtime: 42}}
	}
	add(root, "a", d1, kD, 0)
	add(d1, "b", d2, kD, 0)
	add(d2, "f", f1, kF, 10)
	u1, u2 := UnknownDir(1), UnknownDir(2)
	have := []*tree.Entry{
		{Slot: tree.Slot{Parent: root, Name: "a"}, ID: u1, Kind: kD},
		{Slot: tree.Slot{Parent: u1, Name: "b"}, ID: u2, Kind: kD},
		{Slot: tree.Slot{Parent: u2, Name: "f"}, Kind: kF, Size: 10, Meta: tree.Meta{Mtime: 42}},
		{Slot: tree.Slot{Parent: u2, Name: "extra"}, Kind: kF, Size: 3},
		{Slot: tree.Slot{Parent: root, Name: "gone"}, ID: UnknownDir(3), Kind: kD},
		{Slot: tree.Slot{Parent: UnknownDir(3), Name: "inside"}, Kind: kF},
	}
	ad := AdoptByPath(want, have, nil, root)
	var got []string
	for _, op := range ad.Ops {
		got = append(got, fmt.Sprintf("%s %s %s/%s", op.Kind, op.ID, op.To.Parent, op.To.Name))
	}
	wantOps := []string{"ADOPT d1 root/a", "ADOPT d2 d1/b", "ADOPT f1 d2/f"}
	if strings.Join(got, "; ") != strings.Join(wantOps, "; ") {
		t.Errorf("ops %q, want %q", got, wantOps)
	}
	bySlot := map[tree.Slot]*tree.Entry{}
	for _, h := range ad.Have {
		bySlot[h.Slot] = h
	}
	if h := bySlot[tree.Slot{Parent: d2, Name: "extra"}]; h == nil || h.ID != "" {
		t.Errorf("the extra file inside the adopted directory: %+v, want it unknown under d2", h)
	}
	if h := bySlot[tree.Slot{Parent: root, Name: "gone"}]; h == nil || h.ID != "" {
		t.Errorf("an unknown directory the primary lacks: %+v, want one unknown entry", h)
	}
	for _, h := range ad.Have {
		if IsUnknownDir(h.Parent) || IsUnknownDir(h.ID) {
			t.Errorf("a stand-in survived: %+v", h)
		}
	}
	if old := ad.Old[f1]; old == nil || old.Size != 10 || old.Meta.Mtime != 42 {
		t.Errorf("old entry of the adopted file: %+v", old)
	}
}
