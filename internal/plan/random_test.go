package plan

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// chooser is the source of decisions for the generators: a seeded PRNG for
// the randomized test, the fuzzer's bytes for FuzzPlan.
type chooser interface {
	intn(n int) int // in [0, n); n >= 1
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }

// byteChooser reads one byte per decision; once the bytes are used up every
// decision is 0.
type byteChooser struct {
	b []byte
	i int
}

func (c *byteChooser) intn(n int) int {
	if n <= 1 || c.i >= len(c.b) {
		return 0
	}
	v := int(c.b[c.i])
	c.i++
	return v % n
}

func (c *byteChooser) done() bool { return c.i >= len(c.b) }

var names = []string{"a", "b", "c", "d", "e"}

const maxDirDepth = 4

func pick[T any](c chooser, xs []T) T { return xs[c.intn(len(xs))] }

// slotsWhere lists the slots holding a node that satisfies f, sorted (the
// primary model has no staging area, so these are all reachable).
func (m *model) slotsWhere(f func(*node) bool) []tree.Slot {
	var out []tree.Slot
	for s, k := range m.slots {
		if f(m.nodes[k]) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, cmpSlot)
	return out
}

func cmpSlot(a, b tree.Slot) int {
	if c := strings.Compare(string(a.Parent), string(b.Parent)); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func (m *model) nonDirSlots() []tree.Slot {
	return m.slotsWhere(func(n *node) bool { return !isDir(n.kind) })
}

func (m *model) dirSlots() []tree.Slot {
	return m.slotsWhere(func(n *node) bool { return isDir(n.kind) })
}

// parentsFor lists the directories that may hold a new entry of kind k
// without making a directory deeper than maxDirDepth.
func (m *model) parentsFor(k tree.Kind) []fileid.ID {
	var out []fileid.ID
	for _, d := range m.dirs() {
		if !isDir(k) || m.depth(d) < maxDirDepth {
			out = append(out, d)
		}
	}
	return out
}

// subtreeHeight is the height of a directory's subtree (0 for an empty one).
func (m *model) subtreeHeight(d fileid.ID) int {
	h := 0
	for _, c := range m.children(d) {
		if n := m.nodes[m.slots[c]]; isDir(n.kind) {
			h = max(h, 1+m.subtreeHeight(n.id))
		}
	}
	return h
}

var leafKinds = []tree.Kind{kF, kF, kF, kL, kP}

// genTree fills m with up to n random entries.
func genTree(c chooser, m *model, n int) {
	for range n {
		var k tree.Kind
		switch c.intn(10) {
		case 0, 1, 2:
			k = kD
		case 3:
			if files := m.slotsWhere(func(n *node) bool { return n.kind == kF }); len(files) > 0 {
				src := pick(c, files)
				dst := tree.Slot{Parent: pick(c, m.parentsFor(kF)), Name: pick(c, names)}
				if _, busy := m.slots[dst]; !busy {
					_ = m.put(dst, kF, m.slots[src])
				}
				continue
			}
			k = kF
		default:
			k = pick(c, leafKinds)
		}
		dst := tree.Slot{Parent: pick(c, m.parentsFor(k)), Name: pick(c, names)}
		if _, busy := m.slots[dst]; !busy {
			_ = m.put(dst, k, m.newID(k))
		}
	}
}

// mutate applies one random primary operation, recording dirty slots. It
// returns a description, or "" when the chosen operation was not possible.
func mutate(c chooser, m *model) string {
	freeOrAny := func(k tree.Kind) tree.Slot {
		return tree.Slot{Parent: pick(c, m.parentsFor(k)), Name: pick(c, names)}
	}
	switch c.intn(9) {
	case 0, 1: // create
		k := pick(c, []tree.Kind{kF, kF, kD, kD, kL, kP})
		s := freeOrAny(k)
		if _, busy := m.slots[s]; busy {
			return ""
		}
		id := m.newID(k)
		_ = m.put(s, k, id)
		return fmt.Sprintf("create %s %s %s", k, m.path(s), id)
	case 2: // unlink
		ss := m.nonDirSlots()
		if len(ss) == 0 {
			return ""
		}
		s := pick(c, ss)
		d := "rm " + m.path(s)
		m.rm(s)
		return d
	case 3: // rm -rf
		ss := m.dirSlots()
		if len(ss) == 0 {
			return ""
		}
		s := pick(c, ss)
		d := "rm -rf " + m.path(s)
		m.rm(s)
		return d
	case 4, 5: // rename a non-directory (maybe over a non-directory)
		ss := m.nonDirSlots()
		if len(ss) == 0 {
			return ""
		}
		src := pick(c, ss)
		dst := freeOrAny(kF)
		if k, busy := m.slots[dst]; busy && (isDir(m.nodes[k].kind) || dst == src) {
			return ""
		}
		d := fmt.Sprintf("mv %s %s", m.path(src), m.path(dst))
		m.rename(src, dst)
		return d
	case 6: // rename a directory (maybe over an empty directory)
		ss := m.dirSlots()
		if len(ss) == 0 {
			return ""
		}
		src := pick(c, ss)
		id := m.slots[src]
		var parents []fileid.ID
		h := m.subtreeHeight(id)
		for _, p := range m.dirs() {
			if !m.inside(p, id) && m.depth(p)+1+h <= maxDirDepth {
				parents = append(parents, p)
			}
		}
		if len(parents) == 0 {
			return ""
		}
		dst := tree.Slot{Parent: pick(c, parents), Name: pick(c, names)}
		if dst == src {
			return ""
		}
		if k, busy := m.slots[dst]; busy && (!isDir(m.nodes[k].kind) || len(m.children(k)) > 0) {
			return ""
		}
		d := fmt.Sprintf("mv %s %s", m.path(src), m.path(dst))
		m.rename(src, dst)
		return d
	case 7: // hardlink
		ss := m.nonDirSlots()
		if len(ss) == 0 {
			return ""
		}
		src := pick(c, ss)
		dst := freeOrAny(kF)
		if _, busy := m.slots[dst]; busy {
			return ""
		}
		k := m.slots[src]
		d := fmt.Sprintf("ln %s %s", m.path(src), m.path(dst))
		_ = m.put(dst, m.nodes[k].kind, k)
		return d
	default: // delete and recreate with another type
		ss := m.slotsWhere(func(*node) bool { return true })
		if len(ss) == 0 {
			return ""
		}
		s := pick(c, ss)
		old := m.nodes[m.slots[s]].kind
		var kinds []tree.Kind
		for _, k := range []tree.Kind{kF, kD, kL, kP} {
			if k != old && (!isDir(k) || m.depth(s.Parent) < maxDirDepth) {
				kinds = append(kinds, k)
			}
		}
		k := pick(c, kinds)
		d := fmt.Sprintf("recreate %s as %s", m.path(s), k)
		m.rm(s)
		_ = m.put(s, k, m.newID(k))
		return d
	}
}

// perturb makes the secondary differ from the primary the way a pre-seeded
// or half-synced secondary does: some entries are missing, some are unknown
// entries (of the same kind or another), some unknown entries are extra.
func perturb(c chooser, sec *model) {
	for _, s := range sec.reachable() {
		k, ok := sec.slots[s]
		if !ok { // removed with a parent
			continue
		}
		n := sec.nodes[k]
		switch c.intn(12) {
		case 0: // missing
			sec.removeTree2(s)
		case 1, 2: // an unknown entry of the same kind (empty if a dir)
			sec.removeTree2(s)
			sec.addUnknown(s, n.kind)
		case 3: // an unknown entry of another kind
			sec.removeTree2(s)
			sec.addUnknown(s, pick(c, []tree.Kind{kF, kD, kL, kP}))
		}
	}
	for range c.intn(4) {
		d := pick(c, sec.dirs())
		s := tree.Slot{Parent: d, Name: pick(c, names)}
		if _, busy := sec.slots[s]; !busy {
			sec.addUnknown(s, pick(c, []tree.Kind{kF, kD, kL, kP}))
		}
	}
}

// removeTree2 takes the entry at s out of a secondary model completely (as if
// it had never been synced): a directory with its subtree, a non-directory
// link; a file left without links is forgotten.
func (m *model) removeTree2(s tree.Slot) {
	k := m.slots[s]
	n := m.nodes[k]
	if isDir(n.kind) {
		for _, c := range m.children(k) {
			m.removeTree2(c)
		}
		delete(m.nodes, k)
	} else {
		delete(n.links, s)
		if len(n.links) == 0 {
			delete(m.nodes, k)
		}
	}
	delete(m.slots, s)
}

type variant int

const (
	journalVariant variant = iota // dirty = touched slots, Alive from the primary
	crawlVariant                  // dirty = every slot, Alive false
	preseedVariant                // crawl onto a perturbed secondary (unknowns, missing entries)
)

func (v variant) String() string { return [...]string{"journal", "crawl", "preseed"}[v] }

// runCase builds a random tree, mutates the primary (up to maxOps random
// operations), plans, applies and checks; shuffle randomizes the slot order.
func runCase(t testing.TB, c chooser, v variant, maxOps int, shuffle bool) {
	t.Helper()
	prim := newModel()
	genTree(c, prim, 1+c.intn(30))
	sec := prim.clone()
	if v == preseedVariant {
		perturb(c, sec)
	}
	prim.dirty = map[tree.Slot]bool{}
	var log []string
	nops := 1 + c.intn(maxOps)
	for range nops {
		if d := mutate(c, prim); d != "" {
			log = append(log, d)
		}
	}
	in := makeVariantInput(c, v, prim, sec)
	if shuffle {
		for i := len(in.Slots) - 1; i > 0; i-- {
			j := c.intn(i + 1)
			in.Slots[i], in.Slots[j] = in.Slots[j], in.Slots[i]
		}
	}
	p := check(t, prim, sec, in, func() string {
		return fmt.Sprintf("variant %s, primary ops:\n  %s", v, strings.Join(log, "\n  "))
	})
	if v == journalVariant && len(p.Limbo) > 0 {
		t.Fatalf("limbo %v although the journal named every slot", p.Limbo)
	}
}

// makeVariantInput builds the planner input. The journal variant sometimes
// names a few untouched slots too (a journal may over-report).
func makeVariantInput(c chooser, v variant, prim, sec *model) Input {
	if v != journalVariant {
		return crawlInput(prim, sec)
	}
	dirty := prim.dirtySlots()
	if all := append(prim.reachable(), sec.reachable()...); len(all) > 0 && c.intn(4) == 0 {
		for range 1 + c.intn(5) {
			dirty = append(dirty, pick(c, all))
		}
	}
	return makeInput(prim, sec, dirty, func(id fileid.ID) bool { return prim.nodes[id] != nil })
}

func seedFromEnv(t *testing.T) uint64 {
	if s := os.Getenv("GEOREP_PLAN_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GEOREP_PLAN_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// TestMakeRandom: random trees, random primary operations, all three
// variants. On failure the seed is printed; GEOREP_PLAN_SEED=<seed> replays
// it (the n-th case uses seed+n).
func TestMakeRandom(t *testing.T) {
	base := seedFromEnv(t)
	cases := 2000
	if testing.Short() {
		cases = 300
	}
	if os.Getenv("GEOREP_PLAN_SEED") != "" {
		cases = 1
	}
	t.Logf("base seed %d", base)
	for i := range cases {
		seed := base + uint64(i)
		for _, v := range []variant{journalVariant, crawlVariant, preseedVariant} {
			func() {
				defer func() {
					if t.Failed() {
						t.Logf("seed %d, variant %s (rerun with GEOREP_PLAN_SEED=%d)", seed, v, seed)
					}
				}()
				r := rand.New(rand.NewPCG(seed, uint64(v)))
				runCase(t, randChooser{r}, v, 30, seed%2 == 1)
			}()
		}
	}
}

// FuzzPlan: the first byte picks the variant and the slot order, the rest
// drives the tree and operation generators.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{0, 10, 3, 0, 0, 0, 1, 1, 2, 0, 4, 6, 0, 1, 5, 7})
	f.Add([]byte{1, 20, 0, 1, 1, 0, 2, 2, 4, 0, 0, 3, 1, 2, 6, 0, 0, 1})
	f.Add([]byte{2, 15, 9, 9, 3, 1, 0, 4, 4, 8, 8, 2, 2, 1, 3, 5, 5, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := variant(data[0] % 3)
		shuffle := data[0]&4 != 0
		c := &byteChooser{b: data[1:]}
		prim := newModel()
		genTree(c, prim, 1+c.intn(30))
		sec := prim.clone()
		if v == preseedVariant {
			perturb(c, sec)
		}
		prim.dirty = map[tree.Slot]bool{}
		var log []string
		for i := 0; i < 40 && !c.done(); i++ {
			if d := mutate(c, prim); d != "" {
				log = append(log, d)
			}
		}
		in := makeVariantInput(c, v, prim, sec)
		if shuffle {
			for i := len(in.Slots) - 1; i > 0; i-- {
				j := int(uint(i*7919+len(data)) % uint(i+1))
				in.Slots[i], in.Slots[j] = in.Slots[j], in.Slots[i]
			}
		}
		p := check(t, prim, sec, in, func() string {
			return fmt.Sprintf("variant %s, primary ops:\n  %s", v, strings.Join(log, "\n  "))
		})
		if v == journalVariant && len(p.Limbo) > 0 {
			t.Fatalf("limbo %v although the journal named every slot", p.Limbo)
		}
	})
}
