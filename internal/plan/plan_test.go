package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// ops returns the operations of kind k (all when k == 0).
func opsOf(p Plan, k Kind) []Op {
	var out []Op
	for _, op := range p.Ops {
		if k == 0 || op.Kind == k {
			out = append(out, op)
		}
	}
	return out
}

// kindsFor lists the kinds of the operations naming id, in order; a new file
// shows as "NEWFILE".
func kindsFor(p Plan, id fileid.ID) []string {
	var out []string
	for _, op := range p.Ops {
		if op.ID == id {
			out = append(out, op.Kind.String())
		}
	}
	for _, nf := range p.NewFiles {
		if nf.Entry.ID == id {
			out = append(out, "NEWFILE")
		}
	}
	return out
}

func wantKinds(t *testing.T, p Plan, id fileid.ID, kinds ...string) {
	t.Helper()
	if got := kindsFor(p, id); !slices.Equal(got, kinds) {
		t.Errorf("ops for %s = %v, want %v", id, got, kinds)
	}
}

// notIn checks that none of the ids is named by any operation or new file.
func notIn(t *testing.T, p Plan, ids ...fileid.ID) {
	t.Helper()
	for _, id := range ids {
		if got := kindsFor(p, id); len(got) != 0 {
			t.Errorf("%s should not be in the plan, got %v", id, got)
		}
	}
}

func noNewFiles(t *testing.T, p Plan) {
	t.Helper()
	if len(p.NewFiles) != 0 {
		t.Errorf("rename must not re-send data, got new files %v", p.NewFiles)
	}
}

func numOps(t *testing.T, p Plan, n int) {
	t.Helper()
	if len(p.Ops) != n {
		t.Errorf("got %d ops, want %d:\n%s", len(p.Ops), n, dumpPlan(p))
	}
}

func TestMakeCases(t *testing.T) {
	base := []ent{
		{"A", kD, "A"},
		{"A/f", kF, "fA"},
		{"A/S", kD, "AS"},
		{"A/S/g", kF, "gAS"},
		{"B", kD, "B"},
		{"B/h", kF, "hB"},
		{"x", kF, "x"},
		{"y", kF, "y"},
	}
	cases := []struct {
		name    string
		init    []ent
		unknown []ent // on the secondary only (id unused)
		mutate  func(p *model)
		crawl   bool // dirty = every slot, Alive = false
		check   func(t *testing.T, p Plan)
	}{
		{name: "create file", mutate: func(p *model) { p.create("A/new", kF, "n1") }, check: func(t *testing.T, p Plan) {
			numOps(t, p, 0)
			if len(p.NewFiles) != 1 || p.NewFiles[0].Entry.ID != "n1" || len(p.NewFiles[0].Slots) != 1 {
				t.Errorf("want one new file n1, got %v", p.NewFiles)
			}
		}},
		{name: "create dir", mutate: func(p *model) { p.create("A/nd", kD, "nd") }, check: func(t *testing.T, p Plan) {
			numOps(t, p, 1)
			wantKinds(t, p, "nd", "MKDIR")
		}},
		{name: "create dir with content", mutate: func(p *model) {
			p.create("N", kD, "N")
			p.create("N/M", kD, "NM")
			p.create("N/M/f", kF, "NMf")
			p.create("N/M/l", kL, "NMl")
		}, check: func(t *testing.T, p Plan) {
			wantKinds(t, p, "N", "MKDIR")
			wantKinds(t, p, "NM", "MKDIR")
			wantKinds(t, p, "NMl", "SYMLINK")
			wantKinds(t, p, "NMf", "NEWFILE")
			if p.Ops[0].ID != "N" {
				t.Errorf("parent must be made first:\n%s", dumpPlan(p))
			}
		}},
		{name: "create symlink", mutate: func(p *model) { p.create("B/l", kL, "l1") }, check: func(t *testing.T, p Plan) {
			numOps(t, p, 1)
			wantKinds(t, p, "l1", "SYMLINK")
			if e := p.Ops[0].Entry; e == nil || e.Target != "->l1" {
				t.Errorf("symlink entry %+v", e)
			}
		}},
		{name: "create fifo", mutate: func(p *model) { p.create("B/p", kP, "p1") }, check: func(t *testing.T, p Plan) {
			numOps(t, p, 1)
			wantKinds(t, p, "p1", "MKNOD")
		}},
		{name: "delete file", mutate: func(p *model) { p.rmPath("A/f") }, check: func(t *testing.T, p Plan) {
			numOps(t, p, 2)
			wantKinds(t, p, "fA", "UNLINK", "DROP")
		}},
		{name: "delete dir tree", mutate: func(p *model) { p.rmPath("A") }, check: func(t *testing.T, p Plan) {
			wantKinds(t, p, "A", "STAGE", "RMTREE")
			wantKinds(t, p, "AS", "STAGE", "RMTREE")
			wantKinds(t, p, "fA", "UNLINK", "DROP")
			wantKinds(t, p, "gAS", "UNLINK", "DROP")
			last := p.Ops[len(p.Ops)-4:]
			for _, op := range last {
				if op.Kind != RemoveTree && op.Kind != Drop {
					t.Errorf("removals must come last:\n%s", dumpPlan(p))
				}
			}
		}},
		{name: "rename file within dir", mutate: func(p *model) { p.mv("A/f", "A/f2") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 2)
			wantKinds(t, p, "fA", "STAGE", "MOVE")
		}},
		{name: "rename file across dirs", mutate: func(p *model) { p.mv("A/f", "B/f") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 2)
			wantKinds(t, p, "fA", "STAGE", "MOVE")
		}},
		{name: "rename over existing file", mutate: func(p *model) { p.mv("x", "y") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "x", "STAGE", "MOVE")
			wantKinds(t, p, "y", "UNLINK", "DROP")
		}},
		{name: "rename over a hardlinked file", init: append(slices.Clone(base), ent{"B/y2", kF, "y"}),
			mutate: func(p *model) { p.mv("x", "y") }, check: func(t *testing.T, p Plan) {
				noNewFiles(t, p)
				wantKinds(t, p, "x", "STAGE", "MOVE")
				wantKinds(t, p, "y", "UNLINK") // still alive at B/y2
			}},
		{name: "rename dir with content", mutate: func(p *model) { p.mv("A", "B/A2") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 2)
			wantKinds(t, p, "A", "STAGE", "MOVE")
			notIn(t, p, "fA", "AS", "gAS")
		}},
		{name: "swap two dirs through a temp name", mutate: func(p *model) {
			p.mv("A", "T")
			p.mv("B", "A")
			p.mv("T", "B")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 4)
			wantKinds(t, p, "A", "STAGE", "MOVE")
			wantKinds(t, p, "B", "STAGE", "MOVE")
			notIn(t, p, "fA", "hB", "AS")
		}},
		{name: "rename dir into former sibling's subtree", init: []ent{
			{"X", kD, "X"}, {"X/f", kF, "Xf"},
			{"Y", kD, "Y"}, {"Y/sub", kD, "Ysub"},
		}, mutate: func(p *model) { p.mv("X", "Y/sub/X") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "X", "STAGE", "MOVE")
			notIn(t, p, "Y", "Ysub", "Xf")
		}},
		{name: "move dir up and its parent into it", init: []ent{
			{"A", kD, "A"}, {"A/B", kD, "B"}, {"A/B/f", kF, "f"}, {"A/g", kF, "g"},
		}, mutate: func(p *model) {
			p.mv("A/B", "B")
			p.mv("A", "B/A")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "A", "STAGE", "MOVE")
			wantKinds(t, p, "B", "STAGE", "MOVE")
			notIn(t, p, "f", "g")
		}},
		{name: "three-level rotation", init: []ent{
			{"A", kD, "A"}, {"A/B", kD, "B"}, {"A/B/C", kD, "C"},
		}, mutate: func(p *model) {
			p.mv("A/B/C", "C")
			p.mv("A", "C/A")
			p.mv("C/A/B", "C/A/B2")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "A", "STAGE", "MOVE")
			wantKinds(t, p, "B", "STAGE", "MOVE")
			wantKinds(t, p, "C", "STAGE", "MOVE")
		}},
		{name: "recreate file as dir", mutate: func(p *model) {
			p.rmPath("x")
			p.create("x", kD, "xd")
			p.create("x/in", kF, "xin")
		}, check: func(t *testing.T, p Plan) {
			wantKinds(t, p, "x", "UNLINK", "DROP")
			wantKinds(t, p, "xd", "MKDIR")
			wantKinds(t, p, "xin", "NEWFILE")
		}},
		{name: "recreate dir as symlink", mutate: func(p *model) {
			p.rmPath("A")
			p.create("A", kL, "Al")
		}, check: func(t *testing.T, p Plan) {
			wantKinds(t, p, "A", "STAGE", "RMTREE")
			wantKinds(t, p, "Al", "SYMLINK")
		}},
		{name: "replace dir by a moved file", mutate: func(p *model) {
			p.rmPath("A")
			p.mv("x", "A")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "x", "STAGE", "MOVE")
			wantKinds(t, p, "A", "STAGE", "RMTREE")
		}},
		{name: "move file out of a deleted dir", mutate: func(p *model) {
			p.mv("A/S/g", "g")
			p.mv("A/S", "B/S")
			p.rmPath("A")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "gAS", "STAGE", "MOVE")
			wantKinds(t, p, "AS", "STAGE", "MOVE")
			wantKinds(t, p, "A", "STAGE", "RMTREE")
		}},
		{name: "hardlink then unlink the first name", mutate: func(p *model) {
			p.ln("x", "B/x2")
			p.rmPath("x")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 2)
			wantKinds(t, p, "x", "STAGE", "MOVE")
		}},
		{name: "hardlink across dirs", mutate: func(p *model) { p.ln("A/f", "B/f") }, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			numOps(t, p, 1)
			wantKinds(t, p, "fA", "LINK")
		}},
		{name: "new file with hardlinks", mutate: func(p *model) {
			p.create("A/n", kF, "n")
			p.ln("A/n", "B/n")
			p.ln("A/n", "n")
		}, check: func(t *testing.T, p Plan) {
			numOps(t, p, 0)
			if len(p.NewFiles) != 1 || len(p.NewFiles[0].Slots) != 3 {
				t.Errorf("want one new file at 3 slots, got %v", p.NewFiles)
			}
		}},
		{name: "unknown file at wanted slot is adopted", unknown: []ent{{"A/new", kF, ""}},
			mutate: func(p *model) { p.create("A/new", kF, "n1") }, check: func(t *testing.T, p Plan) {
				numOps(t, p, 1)
				wantKinds(t, p, "n1", "ADOPT")
			}},
		{name: "unknown dir at wanted slot is adopted", unknown: []ent{{"A/nd", kD, ""}},
			mutate: func(p *model) {
				p.create("A/nd", kD, "nd")
				p.create("A/nd/f", kF, "ndf")
			}, check: func(t *testing.T, p Plan) {
				wantKinds(t, p, "nd", "ADOPT")
				wantKinds(t, p, "ndf", "NEWFILE")
			}},
		{name: "unknown of another kind is a stray", unknown: []ent{{"A/new", kD, ""}, {"A/new/junk", kF, ""}},
			mutate: func(p *model) { p.create("A/new", kF, "n1") }, check: func(t *testing.T, p Plan) {
				wantKinds(t, p, "n1", "NEWFILE")
				if len(p.Ops) != 2 || p.Ops[0].Kind != Stage || p.Ops[0].ID != "" || p.Ops[1].Kind != PurgeStrays {
					t.Errorf("want STAGE of the unknown then PURGE:\n%s", dumpPlan(p))
				}
			}},
		{name: "unknown at slot of a renamed file is a stray", unknown: []ent{{"B/f", kF, ""}},
			mutate: func(p *model) { p.mv("A/f", "B/f") }, check: func(t *testing.T, p Plan) {
				noNewFiles(t, p)
				wantKinds(t, p, "fA", "STAGE", "MOVE")
				if len(opsOf(p, PurgeStrays)) != 1 {
					t.Errorf("want a purge:\n%s", dumpPlan(p))
				}
			}},
		{name: "unknown symlink is replaced, not adopted", unknown: []ent{{"B/l", kL, ""}},
			mutate: func(p *model) { p.create("B/l", kL, "l1") }, check: func(t *testing.T, p Plan) {
				wantKinds(t, p, "l1", "SYMLINK")
				if len(opsOf(p, PurgeStrays)) != 1 {
					t.Errorf("want a purge:\n%s", dumpPlan(p))
				}
			}},
		{name: "crawl of an unchanged tree", crawl: true, mutate: func(p *model) {}, check: func(t *testing.T, p Plan) {
			numOps(t, p, 0)
			noNewFiles(t, p)
		}},
		{name: "crawl after renames and deletes", crawl: true, mutate: func(p *model) {
			p.mv("A", "B/A")
			p.rmPath("x")
			p.mv("y", "B/A/S/y")
		}, check: func(t *testing.T, p Plan) {
			noNewFiles(t, p)
			wantKinds(t, p, "A", "STAGE", "MOVE")
			wantKinds(t, p, "y", "STAGE", "MOVE")
			wantKinds(t, p, "x", "UNLINK", "DROP")
		}},

		// Regressions found by the randomized tests.

		// Bug 1: a hardlinked file wanted only at a slot it already holds
		// was staged from its other (departing) slot and never moved back:
		// its link stayed in the staging area for ever (and the next batch
		// staging it again collides there).
		{name: "regression: unlink one of two hardlinks (crawl)", crawl: true,
			init:   append(slices.Clone(base), ent{"B/x2", kF, "x"}),
			mutate: func(p *model) { p.rmPath("B/x2") }, check: func(t *testing.T, p Plan) {
				numOps(t, p, 1)
				wantKinds(t, p, "x", "UNLINK")
			}},
		{name: "regression: unlink one of two hardlinks, other name touched",
			init: append(slices.Clone(base), ent{"B/x2", kF, "x"}),
			mutate: func(p *model) {
				p.mv("x", "tmp")
				p.mv("tmp", "x")
				p.rmPath("B/x2")
			}, check: func(t *testing.T, p Plan) {
				numOps(t, p, 1)
				wantKinds(t, p, "x", "UNLINK")
			}},
		// Bug 2: a new hardlinked file with one of its names pre-seeded
		// (unknown entry, adopted) was also sent as a new file when another
		// of its slots came first: the secondary created the ID twice.
		{name: "regression: adopt a hardlinked new file at its later slot", unknown: []ent{{"B/n", kF, ""}},
			mutate: func(p *model) {
				p.create("A/n", kF, "n")
				p.ln("A/n", "B/n")
			}, check: func(t *testing.T, p Plan) {
				noNewFiles(t, p)
				wantKinds(t, p, "n", "ADOPT", "LINK")
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			init := c.init
			if init == nil {
				init = base
			}
			prim := buildModel(init...)
			sec := prim.clone()
			for _, u := range c.unknown {
				sec.addUnknown(sec.mustResolve(u.path), u.kind)
			}
			prim.dirty = map[tree.Slot]bool{}
			c.mutate(prim)
			in := journalInput(prim, sec)
			if c.crawl {
				in = crawlInput(prim, sec)
			}
			p := check(t, prim, sec, in, func() string { return c.name })
			if c.check != nil {
				c.check(t, p)
			}
			if t.Failed() {
				t.Logf("plan:\n%s", dumpPlan(p))
			}
		})
	}
}

// TestMakeSlotOrder checks that the plan does not depend on the order of the
// dirty slots: every permutation of a small tricky case works.
func TestMakeSlotOrder(t *testing.T) {
	init := []ent{{"A", kD, "A"}, {"A/B", kD, "B"}, {"A/B/f", kF, "f"}, {"x", kF, "x"}}
	prim := buildModel(init...)
	sec := prim.clone()
	sec.addUnknown(sec.mustResolve("u"), kF)
	prim.dirty = map[tree.Slot]bool{}
	prim.mv("A/B", "B")
	prim.mv("A", "B/A")
	prim.ln("x", "B/A/x")
	prim.mv("x", "B/x")
	prim.create("u", kF, "u")
	prim.ln("u", "B/u")
	slots := prim.dirtySlots()
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		order := slices.Clone(slots)
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		s := sec.clone()
		in := makeInput(prim, s, order, func(id fileid.ID) bool { return prim.nodes[id] != nil })
		check(t, prim, s, in, func() string { return fmt.Sprintf("order %v", order) })
	}
}

func TestKindString(t *testing.T) {
	for k := Stage; k <= PurgeStrays; k++ {
		if k.String() == "OP?" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(0).String() != "OP?" || Kind(99).String() != "OP?" {
		t.Error("unknown kinds must print OP?")
	}
}

func TestSortSlots(t *testing.T) {
	s := []tree.Slot{{Parent: "b", Name: "a"}, {Parent: "a", Name: "z"}, {Parent: "a", Name: "b"}}
	SortSlots(s)
	want := []tree.Slot{{Parent: "a", Name: "b"}, {Parent: "a", Name: "z"}, {Parent: "b", Name: "a"}}
	if !slices.Equal(s, want) {
		t.Errorf("got %v", s)
	}
}

// TestMakeSplitBatches: a rename whose two sides land in different batches.
// The first batch sees only the old slot while the primary still has the
// entry (Alive): a directory waits in the staging area (Limbo), a file is
// unlinked but kept; the second batch puts both at their new slots by
// identity, without re-creating or re-sending anything.
func TestMakeSplitBatches(t *testing.T) {
	prim := buildModel(ent{"A", kD, "A"}, ent{"A/f", kF, "f"}, ent{"B", kD, "B"}, ent{"x", kF, "x"})
	sec := prim.clone()
	prim.mv("A", "B/A2")
	prim.mv("x", "B/x2")
	alive := func(id fileid.ID) bool { return prim.nodes[id] != nil }

	first := []tree.Slot{prim.mustResolve("A"), prim.mustResolve("x")}
	p1 := Make(makeInput(prim, sec, first, alive))
	wantKinds(t, p1, "A", "STAGE")
	wantKinds(t, p1, "x", "UNLINK")
	if !slices.Equal(p1.Limbo, []fileid.ID{"A"}) {
		t.Errorf("limbo = %v, want [A]", p1.Limbo)
	}
	if err := sec.apply(p1); err != nil {
		t.Fatalf("batch 1: %v\n%s", err, dumpPlan(p1))
	}
	if in := sec.info("A"); !in.Exists || !in.Staged {
		t.Errorf("A after batch 1: %+v, want staged", in)
	}
	if in := sec.info("x"); !in.Exists || in.Links != 0 {
		t.Errorf("x after batch 1: %+v, want kept with no link", in)
	}

	second := []tree.Slot{prim.mustResolve("B/A2"), prim.mustResolve("B/x2")}
	p2 := check(t, prim, sec, makeInput(prim, sec, second, alive), func() string { return "batch 2" })
	noNewFiles(t, p2)
	wantKinds(t, p2, "A", "MOVE")
	wantKinds(t, p2, "x", "LINK")
	notIn(t, p2, "f")
}
