package plan

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// A crash can stop the secondary between any two operations of a plan (and,
// once the entry operations are done, between two new files). The next run
// (georep sync, or georep run restarting) crawls: it plans again from
// whatever the secondary then holds. That plan must converge, keep
// identities, and leave nothing in the staging area.

// crashPrefix applies the first n ops of p to sec (and the first f new files
// once every op is applied), as a crash after them leaves the secondary.
func crashPrefix(sec *model, p Plan, n, f int) error {
	prefix := Plan{Ops: p.Ops[:n]}
	if n == len(p.Ops) {
		prefix.NewFiles = p.NewFiles[:f]
	}
	return sec.apply(prefix)
}

// limboCleanup is what the crawl adds to the planner's ops (worker.diff):
// entries the secondary holds aside (staged, or files with no link left)
// that the primary no longer has are removed, unless the planner sees them
// in the tree (a file with links there is unlinked and dropped by the plan).
func limboCleanup(prim, sec *model) []Op {
	var ids []fileid.ID
	for k, n := range sec.nodes {
		if !n.known || k == rootID || prim.nodes[k] != nil {
			continue
		}
		if (n.staged && isDir(n.kind)) || (!isDir(n.kind) && len(n.links) == 0) {
			ids = append(ids, k)
		}
	}
	slices.Sort(ids)
	var ops []Op
	for _, id := range ids {
		if isDir(sec.nodes[id].kind) {
			ops = append(ops, Op{Kind: RemoveTree, ID: id})
		} else {
			ops = append(ops, Op{Kind: Drop, ID: id})
		}
	}
	return ops
}

// crawlAfterCrashInput is crawlInput as the secondary's listing makes it
// after a crash. The listing also walks the directories held in its staging
// area (and the known directories inside them), and it removes the staged
// link of a file that has links in the tree (secondary.dropRedundantStaged).
func crawlAfterCrashInput(prim, sec *model) Input {
	for _, n := range sec.nodes {
		if n.known && n.staged && !isDir(n.kind) && len(n.links) > 0 {
			n.staged = false
		}
	}
	in := crawlInput(prim, sec)
	var staged []fileid.ID
	for k, n := range sec.nodes {
		if n.known && n.staged && isDir(n.kind) {
			staged = append(staged, k)
		}
	}
	slices.Sort(staged)
	slots := in.Slots
	var walk func(d fileid.ID)
	walk = func(d fileid.ID) {
		for _, c := range sec.children(d) {
			slots = append(slots, c)
			if n := sec.nodes[sec.slots[c]]; n.known && isDir(n.kind) {
				walk(n.id)
			}
		}
	}
	for _, d := range staged {
		walk(d)
	}
	SortSlots(slots)
	return makeInput(prim, sec, slots, nil)
}

// rerun crawls after a crash, applies the whole plan and checks the result
// like check does.
func rerun(t testing.TB, prim, sec *model, ctx func() string) {
	t.Helper()
	before := sec.clone()
	p := Make(crawlAfterCrashInput(prim, sec))
	p.Ops = append(p.Ops, limboCleanup(prim, sec)...)
	// The agent's drop also removes a staged link that is the file's last;
	// the model's Drop wants none: unstage what is dropped.
	for _, op := range p.Ops {
		if n := sec.nodes[op.ID]; op.Kind == Drop && n != nil && n.staged {
			n.staged = false
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n%s\nprimary:\n%ssecondary after the crash:\n%splan:\n%s", fmt.Sprintf(format, args...), ctx(),
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
	for _, id := range createdIDs(p) {
		if n := before.nodes[id]; n != nil && n.known && prim.nodes[id] != nil {
			fail("identity lost: %s existed on the secondary and is created again", id)
		}
	}
	if q := Make(crawlInput(prim, sec)); len(q.Ops) != 0 || len(q.NewFiles) != 0 {
		fail("not idempotent: planning again gives\n%s", dumpPlan(q))
	}
}

func runCrashCase(t testing.TB, c chooser, journal bool) {
	t.Helper()
	prim := newModel()
	genTree(c, prim, 1+c.intn(30))
	sec := prim.clone()
	prim.dirty = map[tree.Slot]bool{}
	var log []string
	for range 1 + c.intn(20) {
		if d := mutate(c, prim); d != "" {
			log = append(log, d)
		}
	}
	var in Input
	if journal {
		in = journalInput(prim, sec)
	} else {
		in = crawlInput(prim, sec)
	}
	p := Make(in)
	n, f := c.intn(len(p.Ops)+1), 0
	if n == len(p.Ops) {
		f = c.intn(len(p.NewFiles) + 1)
	}
	if err := crashPrefix(sec, p, n, f); err != nil {
		t.Fatalf("the first %d ops: %v", n, err)
	}
	// The primary may change while georep is down.
	var later []string
	for range c.intn(4) {
		if d := mutate(c, prim); d != "" {
			later = append(later, d)
		}
	}
	ctx := func() string {
		return fmt.Sprintf("first plan (%s), cut after %d of %d ops and %d of %d new files:\n%s\nprimary ops:\n  %s\nthen, before the next run:\n  %s",
			map[bool]string{true: "journal", false: "crawl"}[journal], n, len(p.Ops), f, len(p.NewFiles), dumpPlan(p),
			strings.Join(log, "\n  "), strings.Join(later, "\n  "))
	}
	rerun(t, prim, sec, ctx)
}

// TestMakeAfterCrash: random cases (a journal batch or a crawl) cut at a
// random op, then crawled again.
func TestMakeAfterCrash(t *testing.T) {
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
		for v := range 2 {
			func() {
				defer func() {
					if t.Failed() {
						t.Logf("seed %d, variant %d (rerun with GEOREP_PLAN_SEED=%d)", seed, v, seed)
					}
				}()
				r := rand.New(rand.NewPCG(seed, 100+uint64(v)))
				runCrashCase(t, randChooser{r}, v == 1)
			}()
		}
	}
}

// A file staged by a run that crashed before moving it to its new name:
// the next run moves it from the staging area. Linking it from the index
// left the staged link behind for ever (found by TestModelCrashTrials).
func TestMakeStagedFileFromCrash(t *testing.T) {
	prim := buildModel(ent{"A", kD, "A"}, ent{"B", kD, "B"}, ent{"A/x", kF, "x"})
	sec := prim.clone()
	prim.mv("A/x", "B/y")
	p := Make(crawlInput(prim, sec))
	wantKinds(t, p, "x", "STAGE", "MOVE")
	if err := crashPrefix(sec, p, 1, 0); err != nil { // staged, not moved yet
		t.Fatal(err)
	}
	if in := sec.info("x"); !in.Staged {
		t.Fatalf("x after the crash: %+v, want staged", in)
	}
	p2 := Make(crawlAfterCrashInput(prim, sec))
	wantKinds(t, p2, "x", "MOVE")
	rerun(t, prim, sec, func() string { return "after the crash" })
}
