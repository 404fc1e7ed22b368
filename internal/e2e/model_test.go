package e2e

// The reliability suite's model-based tests: random sequences of every kind
// of change a replicator must carry, made on a real primary tree and
// interleaved with replication steps; after each sequence the trees must
// verify identical with the tree oracle (testutil.VerifyPy) and with georep verify.
// The crash trials SIGKILL the replication at random points and require the
// next step to converge.
//
// The primary itself is the model: the generator lists the tree before each
// operation and picks its targets from what is there, so there is no second
// description to keep in step. Every sequence has a seed, printed in its
// subtest name; GEOREP_MODEL_SEED=<seed> runs that one sequence again (the
// same operations, in the same order, with the same replication steps).
//
// Replication goes through the replicator interface: syncReplicator runs
// `georep sync` once per step; a continuous-mode variant (`georep run`) can
// implement the same three methods and reuse every test here.
//
// Environment:
//
//	GEOREP_MODEL_SEQUENCES=N   sequences of TestModelRandomSequences (100)
//	GEOREP_MODEL_SEED=S        run the one sequence S
//	GEOREP_CRASH_TRIALS=N      trials of TestModelCrashTrials (20)
//	GEOREP_CRASH_SSH_TRIALS=N  trials of TestModelCrashTrialsSSH (4)
//	GEOREP_CRASH_SEED=S        run the one crash trial S
//	GEOREP_MODEL_KEEP=DIR      copy a failed case's trees (and inode lists) there

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// Replication steps

// fault is what a faulty step does to the replication while it runs.
type fault int

const (
	// killReplicator SIGKILLs the replicating process (georep sync; for a
	// local secondary its in-process agent dies with it).
	killReplicator fault = iota
	// killAgent SIGKILLs the secondary agent at the far end of ssh.
	killAgent
)

func (f fault) String() string {
	return [...]string{"kill -9 georep sync", "kill -9 remote agent"}[f]
}

// stepResult is what one replication step reports.
type stepResult struct {
	Sum     summary // --json summary (zero when the process died first)
	HasSum  bool
	Exit    int // exit code; -1 when killed by a signal
	Stderr  string
	Elapsed time.Duration
	// Hit: a fault was injected while the step was still running.
	Hit bool
}

// OK reports a step that ended with the secondary in sync.
func (r stepResult) OK() bool {
	return r.Exit == 0 && r.HasSum && r.Sum.OK && r.Sum.Stats.Failures == 0
}

func (r stepResult) String() string {
	if !r.HasSum {
		return fmt.Sprintf("exit %d after %s, no summary; stderr: %s", r.Exit, r.Elapsed.Round(time.Millisecond), tail(r.Stderr, 2000))
	}
	b, _ := json.Marshal(r.Sum)
	return fmt.Sprintf("exit %d after %s: %s; stderr: %s", r.Exit, r.Elapsed.Round(time.Millisecond), b, tail(r.Stderr, 2000))
}

// replicator makes the secondary catch up with the primary. The tests call
// nothing else to replicate, so a variant built on continuous mode can be
// swapped in: its Step would wait until the running replicator reports the
// primary's state at the call replicated (a checkpoint), its StepWithFault
// would kill the daemon (or the remote agent) meanwhile.
type replicator interface {
	// Step replicates the primary as it is now and waits for the outcome.
	Step(t testing.TB) stepResult
	// StepWithFault starts a step and injects f after delay if it is still
	// running, then waits for the outcome.
	StepWithFault(t testing.TB, delay time.Duration, f fault) stepResult
	// Secondary is the secondary's root as a local path (verify reads it).
	Secondary() string
}

// syncReplicator replicates with one `georep sync` per step.
type syncReplicator struct {
	bin, src, dst, secRoot, stateDir string
	extra                            []string // --ssh-command and the like
}

func newLocalSync(bin, src, sec, stateDir string) *syncReplicator {
	return &syncReplicator{bin: bin, src: src, dst: sec, secRoot: sec, stateDir: stateDir}
}

func newSSHSync(bin, src, sec, stateDir string, sshd *testutil.SSHD) *syncReplicator {
	return &syncReplicator{bin: bin, src: src, dst: sshd.UserHost() + ":" + sec, secRoot: sec, stateDir: stateDir,
		extra: []string{"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}}
}

func (r *syncReplicator) Secondary() string { return r.secRoot }

func (r *syncReplicator) command() (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	args := append([]string{"sync", r.src, r.dst, "--state-dir", r.stateDir, "--json", "--no-progress"}, r.extra...)
	cmd := exec.Command(r.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return cmd, &out, &errb
}

func (r *syncReplicator) Step(t testing.TB) stepResult {
	t.Helper()
	return r.StepWithFault(t, -1, killReplicator)
}

func (r *syncReplicator) StepWithFault(t testing.TB, delay time.Duration, f fault) stepResult {
	t.Helper()
	cmd, out, errb := r.command()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start georep sync: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var res stepResult
	var err error
	if delay < 0 {
		err = <-waited
	} else {
		// The remote agent starts after the ssh handshake and may live a
		// small part of the step: its delay counts from its start.
		fire, stop := make(chan []int, 1), make(chan struct{})
		go func() {
			var pids []int
			if f == killAgent {
				for pids = agentPIDs(r.secRoot); len(pids) == 0; pids = agentPIDs(r.secRoot) {
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}
			select {
			case <-stop:
			case <-time.After(delay):
				fire <- pids
			}
		}()
		select {
		case err = <-waited:
			close(stop)
		case pids := <-fire:
			switch f {
			case killReplicator:
				res.Hit = cmd.Process.Signal(syscall.SIGKILL) == nil
			case killAgent:
				for _, pid := range pids {
					if syscall.Kill(pid, syscall.SIGKILL) == nil {
						res.Hit = true
					}
				}
			}
			select {
			case err = <-waited:
			case <-time.After(3 * time.Minute):
				cmd.Process.Kill()
				<-waited
				t.Fatalf("georep sync still running 3 minutes after %s", f)
			}
		}
	}
	res.Elapsed = time.Since(start)
	res.Stderr = errb.String()
	res.Exit = 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("georep sync: %v", err)
		}
		res.Exit = ee.ExitCode()
	}
	if json.Unmarshal(out.Bytes(), &res.Sum) == nil && out.Len() > 0 {
		res.HasSum = true
	}
	return res
}

// agentPIDs lists the processes running `georep secondary --root ROOT` for
// this test's secondary root (so only agents this test started).
func agentPIDs(root string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) < 4 || args[1] != "secondary" {
			continue
		}
		for i := 2; i+1 < len(args); i++ {
			if args[i] == "--root" && filepath.Clean(args[i+1]) == filepath.Clean(root) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The generator

// pnode is one entry of the primary tree as the generator sees it.
type pnode struct {
	rel   string // relative path; "" is the root
	mode  os.FileMode
	ino   uint64
	size  int64
	nlink uint64
}

func (n pnode) isDir() bool     { return n.mode.IsDir() }
func (n pnode) isRegular() bool { return n.mode.IsRegular() }
func (n pnode) isLink() bool    { return n.mode&os.ModeSymlink != 0 }

// gen makes random changes to a primary tree. It is deterministic for a
// seed: entries are listed in sorted order before every choice.
type gen struct {
	root string
	rng  *rand.Rand
	log  []string // one line per operation made (or refused by the kernel)
	// dirty holds the primary inodes whose content is new or changed since
	// the last replication step: the only ones a step may send data for.
	dirty map[uint64]bool
	root0 bool // running as root: chown and device nodes allowed
	// skip names operations this generator never makes.
	skip map[string]bool
}

func newGen(root string, seed int64) *gen {
	return &gen{root: root, rng: rand.New(rand.NewSource(seed)), dirty: map[uint64]bool{}, root0: os.Geteuid() == 0}
}

func (g *gen) path(rel string) string {
	if rel == "" {
		return g.root
	}
	return g.root + "/" + rel
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// inside reports whether rel is dir or below it.
func inside(rel, dir string) bool {
	return dir == "" || rel == dir || strings.HasPrefix(rel, dir+"/")
}

// list walks the primary: every entry, sorted by path, the root first.
func (g *gen) list() []pnode {
	var out []pnode
	var walk func(rel string)
	walk = func(rel string) {
		var st unix.Stat_t
		if unix.Lstat(g.path(rel), &st) != nil {
			return
		}
		fi, err := os.Lstat(g.path(rel))
		if err != nil {
			return
		}
		out = append(out, pnode{rel: rel, mode: fi.Mode(), ino: st.Ino, size: st.Size, nlink: uint64(st.Nlink)})
		if !fi.IsDir() {
			return
		}
		f, err := os.Open(g.path(rel))
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		sort.Strings(names)
		for _, n := range names {
			walk(join(rel, n))
		}
	}
	walk("")
	return out
}

func filter(ns []pnode, f func(pnode) bool) []pnode {
	var out []pnode
	for _, n := range ns {
		if f(n) {
			out = append(out, n)
		}
	}
	return out
}

func (g *gen) pick(ns []pnode) (pnode, bool) {
	if len(ns) == 0 {
		return pnode{}, false
	}
	return ns[g.rng.Intn(len(ns))], true
}

// Names: a few plain ones, so renames often land on an existing name, and
// the awkward ones a replicator must carry byte for byte.
var (
	plainNames = []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	oddNames   = []string{"with space", "new\nline", "\xff\xfe-not-utf8", "ünïcödé-名前", "-dash", ".hidden",
		"tab\there", "back\\slash", "percent%20", strings.Repeat("n", 255)}
)

func (g *gen) name() string {
	if g.rng.Intn(5) == 0 {
		return oddNames[g.rng.Intn(len(oddNames))]
	}
	n := plainNames[g.rng.Intn(len(plainNames))]
	if g.rng.Intn(2) == 0 {
		n += strconv.Itoa(g.rng.Intn(4))
	}
	return n
}

// freshName returns a name not present in dir.
func (g *gen) freshName(dir string) string {
	for range 20 {
		n := g.name()
		if _, err := os.Lstat(g.path(join(dir, n))); os.IsNotExist(err) {
			return n
		}
	}
	return "n" + strconv.FormatInt(g.rng.Int63(), 36)
}

func (g *gen) content() []byte {
	var n int
	switch r := g.rng.Intn(20); {
	case r < 2:
		n = 0
	case r < 10:
		n = 1 + g.rng.Intn(2000)
	case r < 18:
		n = 2000 + g.rng.Intn(20000)
	default:
		n = 64<<10 + g.rng.Intn(100<<10) // large enough for a delta
	}
	b := make([]byte, n)
	g.rng.Read(b)
	return b
}

func (g *gen) markDirty(rel string) {
	var st unix.Stat_t
	if unix.Lstat(g.path(rel), &st) == nil {
		g.dirty[st.Ino] = true
	}
}

func (g *gen) logf(format string, args ...any) {
	g.log = append(g.log, fmt.Sprintf(format, args...))
}

// result logs an operation with its outcome.
func (g *gen) result(desc string, err error) {
	if err != nil {
		g.logf("%s: %v", desc, err)
	} else {
		g.logf("%s", desc)
	}
}

type genOp struct {
	name   string
	weight int
	grows  bool // adds entries (damped when the tree is big)
	do     func(g *gen, ns []pnode) bool
}

var genOps = []genOp{
	{"create", 10, true, (*gen).opCreate},
	{"write", 5, false, (*gen).opWrite},
	{"append", 4, false, (*gen).opAppend},
	{"rewrite", 3, false, (*gen).opRewrite},
	{"truncate", 2, false, (*gen).opTruncShrink},
	{"extend", 2, false, (*gen).opTruncExtend},
	{"mkdir", 6, true, (*gen).opMkdir},
	{"rm -r", 2, false, (*gen).opRmTree},
	{"unlink", 4, false, (*gen).opUnlink},
	{"rename file", 8, false, (*gen).opRenameFile},
	{"rename dir", 5, false, (*gen).opRenameDir},
	{"swap dirs", 2, false, (*gen).opSwapDirs},
	{"exchange", 2, false, (*gen).opExchange},
	{"into sibling", 3, false, (*gen).opIntoSibling},
	{"invert", 2, false, (*gen).opInvert},
	{"retype", 4, false, (*gen).opRetype},
	{"link+unlink", 3, false, (*gen).opLinkUnlink},
	{"hardlink", 3, true, (*gen).opHardlink},
	{"symlink", 3, true, (*gen).opSymlink},
	{"mkfifo", 1, true, (*gen).opFifo},
	{"chmod", 3, false, (*gen).opChmod},
	{"chown", 2, false, (*gen).opChown},
	{"utime", 2, false, (*gen).opUtime},
	{"setxattr", 3, false, (*gen).opSetXattr},
	{"rmxattr", 2, false, (*gen).opRmXattr},
}

// step makes one random change.
func (g *gen) step() {
	for {
		ns := g.list()
		big := len(ns) > 50
		total := 0
		w := make([]int, len(genOps))
		for i, op := range genOps {
			w[i] = op.weight
			if big && op.grows || g.skip[op.name] {
				w[i] = 0
			}
			total += w[i]
		}
		r := g.rng.Intn(total)
		for i, op := range genOps {
			if r < w[i] {
				if op.do(g, ns) {
					return
				}
				break
			}
			r -= w[i]
		}
	}
}

// populate makes n creations (files, directories, links) as a start.
func (g *gen) populate(n int) {
	for range n {
		ns := g.list()
		switch r := g.rng.Intn(10); {
		case r < 5:
			g.opCreate(ns)
		case r < 8:
			g.opMkdir(ns)
		case r < 9:
			g.opSymlink(ns)
		default:
			g.opHardlink(ns)
		}
	}
}

func dirsOf(ns []pnode) []pnode { return filter(ns, pnode.isDir) }
func subdirsOf(ns []pnode) []pnode {
	return filter(ns, func(n pnode) bool { return n.isDir() && n.rel != "" })
}
func filesOf(ns []pnode) []pnode   { return filter(ns, pnode.isRegular) }
func nonDirsOf(ns []pnode) []pnode { return filter(ns, func(n pnode) bool { return !n.isDir() }) }
func nonRootOf(ns []pnode) []pnode { return filter(ns, func(n pnode) bool { return n.rel != "" }) }
func xattrAbleOf(ns []pnode) []pnode {
	return filter(ns, func(n pnode) bool { return n.isDir() || n.isRegular() })
}

func (g *gen) opCreate(ns []pnode) bool {
	d, _ := g.pick(dirsOf(ns))
	rel := join(d.rel, g.freshName(d.rel))
	data := g.content()
	err := os.WriteFile(g.path(rel), data, 0o644)
	g.markDirty(rel)
	g.result(fmt.Sprintf("create %q (%d bytes)", rel, len(data)), err)
	return true
}

func (g *gen) opWrite(ns []pnode) bool {
	f, ok := g.pick(filesOf(ns))
	if !ok {
		return false
	}
	off := g.rng.Int63n(f.size + 1)
	data := make([]byte, 1+g.rng.Intn(3000))
	g.rng.Read(data)
	fh, err := os.OpenFile(g.path(f.rel), os.O_WRONLY, 0)
	if err == nil {
		_, err = fh.WriteAt(data, off)
		fh.Close()
	}
	g.markDirty(f.rel)
	g.result(fmt.Sprintf("write %q at %d (%d bytes)", f.rel, off, len(data)), err)
	return true
}

func (g *gen) opAppend(ns []pnode) bool {
	f, ok := g.pick(filesOf(ns))
	if !ok {
		return false
	}
	data := make([]byte, 1+g.rng.Intn(5000))
	g.rng.Read(data)
	fh, err := os.OpenFile(g.path(f.rel), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = fh.Write(data)
		fh.Close()
	}
	g.markDirty(f.rel)
	g.result(fmt.Sprintf("append %q (%d bytes)", f.rel, len(data)), err)
	return true
}

func (g *gen) opRewrite(ns []pnode) bool {
	f, ok := g.pick(filesOf(ns))
	if !ok {
		return false
	}
	data := g.content()
	fh, err := os.OpenFile(g.path(f.rel), os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = fh.Write(data)
		fh.Close()
	}
	g.markDirty(f.rel)
	g.result(fmt.Sprintf("rewrite %q (%d bytes)", f.rel, len(data)), err)
	return true
}

func (g *gen) opTruncShrink(ns []pnode) bool {
	f, ok := g.pick(filter(filesOf(ns), func(n pnode) bool { return n.size > 0 }))
	if !ok {
		return false
	}
	size := g.rng.Int63n(f.size)
	err := os.Truncate(g.path(f.rel), size)
	g.markDirty(f.rel)
	g.result(fmt.Sprintf("truncate %q to %d", f.rel, size), err)
	return true
}

func (g *gen) opTruncExtend(ns []pnode) bool {
	f, ok := g.pick(filesOf(ns))
	if !ok {
		return false
	}
	size := f.size + 1 + g.rng.Int63n(300<<10) // leaves a hole
	err := os.Truncate(g.path(f.rel), size)
	g.markDirty(f.rel)
	g.result(fmt.Sprintf("extend %q to %d", f.rel, size), err)
	return true
}

func (g *gen) opMkdir(ns []pnode) bool {
	d, _ := g.pick(dirsOf(ns))
	rel := join(d.rel, g.freshName(d.rel))
	g.result(fmt.Sprintf("mkdir %q", rel), os.Mkdir(g.path(rel), 0o755))
	return true
}

func (g *gen) opRmTree(ns []pnode) bool {
	d, ok := g.pick(subdirsOf(ns))
	if !ok {
		return false
	}
	g.result(fmt.Sprintf("rm -r %q", d.rel), os.RemoveAll(g.path(d.rel)))
	return true
}

func (g *gen) opUnlink(ns []pnode) bool {
	f, ok := g.pick(nonDirsOf(ns))
	if !ok {
		return false
	}
	g.result(fmt.Sprintf("unlink %q", f.rel), os.Remove(g.path(f.rel)))
	return true
}

func (g *gen) opRenameFile(ns []pnode) bool {
	f, ok := g.pick(nonDirsOf(ns))
	if !ok {
		return false
	}
	var to string
	if v, ok := g.pick(nonDirsOf(ns)); ok && g.rng.Intn(3) == 0 {
		to = v.rel // over an existing file (or a hardlink of itself: a no-op)
	} else {
		d, _ := g.pick(dirsOf(ns))
		to = join(d.rel, g.freshName(d.rel))
	}
	g.result(fmt.Sprintf("rename %q -> %q", f.rel, to), os.Rename(g.path(f.rel), g.path(to)))
	return true
}

func (g *gen) opRenameDir(ns []pnode) bool {
	d, ok := g.pick(subdirsOf(ns))
	if !ok {
		return false
	}
	targets := filter(dirsOf(ns), func(n pnode) bool { return !inside(n.rel, d.rel) })
	var to string
	if e, ok := g.pick(filter(targets, func(n pnode) bool { return n.rel != "" && !inside(d.rel, n.rel) })); ok && g.rng.Intn(4) == 0 {
		to = e.rel // over another directory: works when it is empty
	} else {
		p, _ := g.pick(targets)
		to = join(p.rel, g.freshName(p.rel))
	}
	g.result(fmt.Sprintf("rename dir %q -> %q", d.rel, to), os.Rename(g.path(d.rel), g.path(to)))
	return true
}

// unrelatedPair picks two entries of ns of which neither contains the other.
func (g *gen) unrelatedPair(ns []pnode) (a, b pnode, ok bool) {
	for range 10 {
		a, ok1 := g.pick(ns)
		b, ok2 := g.pick(ns)
		if !ok1 || !ok2 || a.rel == b.rel || inside(a.rel, b.rel) || inside(b.rel, a.rel) {
			continue
		}
		return a, b, true
	}
	return pnode{}, pnode{}, false
}

// opSwapDirs swaps two directories through a temporary name, as a user
// would with mv: a -> tmp, b -> a, tmp -> b.
func (g *gen) opSwapDirs(ns []pnode) bool {
	a, b, ok := g.unrelatedPair(subdirsOf(ns))
	if !ok {
		return false
	}
	tmp := join(parentOf(a.rel), g.freshName(parentOf(a.rel)))
	err := os.Rename(g.path(a.rel), g.path(tmp))
	if err == nil {
		err = os.Rename(g.path(b.rel), g.path(a.rel))
	}
	if err == nil {
		err = os.Rename(g.path(tmp), g.path(b.rel))
	}
	g.result(fmt.Sprintf("swap dirs %q <-> %q via %q", a.rel, b.rel, tmp), err)
	return true
}

// opExchange swaps any two entries atomically (renameat2 RENAME_EXCHANGE),
// a file with a directory too.
func (g *gen) opExchange(ns []pnode) bool {
	a, b, ok := g.unrelatedPair(nonRootOf(ns))
	if !ok {
		return false
	}
	err := unix.Renameat2(unix.AT_FDCWD, g.path(a.rel), unix.AT_FDCWD, g.path(b.rel), unix.RENAME_EXCHANGE)
	g.result(fmt.Sprintf("exchange %q <-> %q", a.rel, b.rel), err)
	return true
}

// opIntoSibling moves a directory into its sibling's subtree.
func (g *gen) opIntoSibling(ns []pnode) bool {
	subs := subdirsOf(ns)
	var pairs [][2]pnode
	for _, a := range subs {
		for _, b := range subs {
			if a.rel != b.rel && parentOf(a.rel) == parentOf(b.rel) {
				pairs = append(pairs, [2]pnode{a, b})
			}
		}
	}
	if len(pairs) == 0 {
		return false
	}
	p := pairs[g.rng.Intn(len(pairs))]
	a, b := p[0], p[1]
	c, _ := g.pick(filter(subs, func(n pnode) bool { return inside(n.rel, b.rel) }))
	to := join(c.rel, g.freshName(c.rel))
	g.result(fmt.Sprintf("rename dir %q into its sibling's subtree: %q", a.rel, to), os.Rename(g.path(a.rel), g.path(to)))
	return true
}

// opInvert makes a directory the child of its former child:
// a/b -> b2 (beside a), then a -> b2/a2.
func (g *gen) opInvert(ns []pnode) bool {
	subs := subdirsOf(ns)
	b, ok := g.pick(filter(subs, func(n pnode) bool { return parentOf(n.rel) != "" }))
	if !ok {
		return false
	}
	a := parentOf(b.rel)
	up := parentOf(a)
	b2 := join(up, g.freshName(up))
	err := os.Rename(g.path(b.rel), g.path(b2))
	a2 := join(b2, g.freshName(b2))
	if err == nil {
		err = os.Rename(g.path(a), g.path(a2))
	}
	g.result(fmt.Sprintf("invert %q under its child: %q -> %q, %q -> %q", a, b.rel, b2, a, a2), err)
	return true
}

// opRetype deletes an entry and makes one of another type at its name.
func (g *gen) opRetype(ns []pnode) bool {
	e, ok := g.pick(nonRootOf(ns))
	if !ok {
		return false
	}
	kinds := []string{"file", "dir", "symlink", "fifo"}
	var have string
	switch {
	case e.isDir():
		have = "dir"
	case e.isRegular():
		have = "file"
	case e.isLink():
		have = "symlink"
	default:
		have = "fifo"
	}
	kinds = slices.DeleteFunc(kinds, func(k string) bool { return k == have })
	k := kinds[g.rng.Intn(len(kinds))]
	p := g.path(e.rel)
	err := os.RemoveAll(p)
	if err == nil {
		err = g.make(e.rel, k)
	}
	g.result(fmt.Sprintf("retype %q: %s -> %s", e.rel, have, k), err)
	return true
}

// make creates an entry of kind k at rel.
func (g *gen) make(rel, k string) error {
	p := g.path(rel)
	switch k {
	case "file":
		err := os.WriteFile(p, g.content(), 0o644)
		g.markDirty(rel)
		return err
	case "dir":
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if g.rng.Intn(2) == 0 {
			inner := join(rel, g.name())
			err := os.WriteFile(g.path(inner), g.content(), 0o600)
			g.markDirty(inner)
			return err
		}
		return nil
	case "symlink":
		return os.Symlink(g.linkTarget(rel), p)
	default:
		return unix.Mkfifo(p, 0o640)
	}
}

func (g *gen) linkTarget(rel string) string {
	switch g.rng.Intn(4) {
	case 0:
		return "/nonexistent/dangling"
	case 1:
		return oddNames[g.rng.Intn(len(oddNames))]
	case 2:
		return "../" + g.name()
	}
	return g.name()
}

func (g *gen) opLinkUnlink(ns []pnode) bool {
	f, ok := g.pick(filesOf(ns))
	if !ok {
		return false
	}
	d, _ := g.pick(dirsOf(ns))
	to := join(d.rel, g.freshName(d.rel))
	err := os.Link(g.path(f.rel), g.path(to))
	if err == nil {
		err = os.Remove(g.path(f.rel))
	}
	g.result(fmt.Sprintf("link %q -> %q, unlink %q", f.rel, to, f.rel), err)
	return true
}

func (g *gen) opHardlink(ns []pnode) bool {
	f, ok := g.pick(filter(nonDirsOf(ns), func(n pnode) bool { return !n.isLink() }))
	if !ok {
		return false
	}
	d, _ := g.pick(dirsOf(ns))
	to := join(d.rel, g.freshName(d.rel))
	g.result(fmt.Sprintf("link %q -> %q", f.rel, to), os.Link(g.path(f.rel), g.path(to)))
	return true
}

func (g *gen) opSymlink(ns []pnode) bool {
	d, _ := g.pick(dirsOf(ns))
	rel := join(d.rel, g.freshName(d.rel))
	target := g.linkTarget(rel)
	g.result(fmt.Sprintf("symlink %q -> %q", rel, target), os.Symlink(target, g.path(rel)))
	return true
}

func (g *gen) opFifo(ns []pnode) bool {
	d, _ := g.pick(dirsOf(ns))
	rel := join(d.rel, g.freshName(d.rel))
	g.result(fmt.Sprintf("mkfifo %q", rel), unix.Mkfifo(g.path(rel), 0o600))
	return true
}

func (g *gen) opChmod(ns []pnode) bool {
	e, ok := g.pick(filter(ns, func(n pnode) bool { return !n.isLink() }))
	if !ok {
		return false
	}
	modes := []uint32{0o600, 0o644, 0o755, 0o400, 0o444, 0, 0o4755, 0o2750, 0o640, 0o1644}
	if e.isDir() {
		modes = []uint32{0o755, 0o700, 0o500, 0o777, 0o1777, 0o2775, 0o711}
	}
	m := modes[g.rng.Intn(len(modes))]
	g.result(fmt.Sprintf("chmod %o %q", m, e.rel), unix.Chmod(g.path(e.rel), m))
	return true
}

func (g *gen) opChown(ns []pnode) bool {
	if !g.root0 {
		return false
	}
	e, _ := g.pick(ns)
	ids := []int{0, 1000, 1001, 1002, 65534}
	uid, gid := ids[g.rng.Intn(len(ids))], ids[g.rng.Intn(len(ids))]
	g.result(fmt.Sprintf("chown %d:%d %q", uid, gid, e.rel), os.Lchown(g.path(e.rel), uid, gid))
	return true
}

func (g *gen) opUtime(ns []pnode) bool {
	e, ok := g.pick(filter(ns, func(n pnode) bool { return !n.isLink() }))
	if !ok {
		return false
	}
	at := time.Unix(1_500_000_000+g.rng.Int63n(300_000_000), g.rng.Int63n(1e9))
	mt := time.Unix(1_500_000_000+g.rng.Int63n(300_000_000), g.rng.Int63n(1e9))
	err := os.Chtimes(g.path(e.rel), at, mt)
	if e.isRegular() {
		g.markDirty(e.rel) // a new mtime is a change of content for the quick check
	}
	g.result(fmt.Sprintf("utime %q %d", e.rel, mt.UnixNano()), err)
	return true
}

func (g *gen) opSetXattr(ns []pnode) bool {
	e, ok := g.pick(xattrAbleOf(ns))
	if !ok {
		return false
	}
	name := "user.k" + strconv.Itoa(g.rng.Intn(3))
	v := make([]byte, 1+g.rng.Intn(100))
	g.rng.Read(v)
	g.result(fmt.Sprintf("setxattr %q %s (%d bytes)", e.rel, name, len(v)), unix.Setxattr(g.path(e.rel), name, v, 0))
	return true
}

func (g *gen) opRmXattr(ns []pnode) bool {
	var cands []pnode
	var names [][]string
	for _, e := range xattrAbleOf(ns) {
		if xs := userXattrs(g.path(e.rel)); len(xs) > 0 {
			cands = append(cands, e)
			names = append(names, xs)
		}
	}
	if len(cands) == 0 {
		return false
	}
	i := g.rng.Intn(len(cands))
	name := names[i][g.rng.Intn(len(names[i]))]
	g.result(fmt.Sprintf("rmxattr %q %s", cands[i].rel, name), unix.Removexattr(g.path(cands[i].rel), name))
	return true
}

func userXattrs(p string) []string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	var out []string
	for _, x := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(x, "user.") {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// Checks

// identity remembers, for every primary regular file at a replication step,
// the inode the secondary holds it in: a file whose content did not change
// before the next step must still be that inode then, wherever it moved (it
// was renamed or linked, not sent again).
type identity struct {
	sec     map[uint64]uint64 // primary inode -> secondary inode
	checked int               // files checked
	moved   int               // of which at another path than before
	paths   map[uint64]string // primary inode -> path at the last step
}

// check compares the secondary with what was recorded, then records anew.
func (id *identity) check(g *gen, secRoot string, sum summary) error {
	var errs []string
	dirtyNow := map[uint64]bool{}
	next := map[uint64]uint64{}
	paths := map[uint64]string{}
	for _, n := range filesOf(g.list()) {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(secRoot, n.rel), &st); err != nil {
			errs = append(errs, fmt.Sprintf("%q: missing on the secondary: %v", n.rel, err))
			continue
		}
		if g.dirty[n.ino] {
			dirtyNow[n.ino] = true
		} else if old, ok := id.sec[n.ino]; ok {
			id.checked++
			if id.paths[n.ino] != n.rel {
				id.moved++
			}
			if old != st.Ino {
				errs = append(errs, fmt.Sprintf("%q (was %q) did not change but the secondary holds a new copy (inode %d, was %d): re-sent instead of renamed",
					n.rel, id.paths[n.ino], st.Ino, old))
			}
		}
		next[n.ino] = st.Ino
		paths[n.ino] = n.rel
	}
	if sum.Stats.DataFiles > len(dirtyNow) {
		errs = append(errs, fmt.Sprintf("the step sent %d files but only %d files are new or changed", sum.Stats.DataFiles, len(dirtyNow)))
	}
	id.sec, id.paths = next, paths
	clear(g.dirty)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// georepVerify runs `georep verify` and returns its output when the trees differ.
func georepVerify(t testing.TB, bin, p, s string, extra ...string) (bool, string) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"verify", "--mtime-ns", p, s}, extra...)...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("georep verify: %v\n%s", err, out)
		}
		return false, string(out)
	}
	return true, string(out)
}

// crawlDump prints the changelog of the last crawl kept in a state dir.
func crawlDump(bin, stateDir string) string {
	logs, _ := filepath.Glob(filepath.Join(stateDir, "sync", "*", "crawl.changelog"))
	var b strings.Builder
	for _, l := range logs {
		out, _ := exec.Command(bin, "changelog", "dump", l).CombinedOutput()
		b.WriteString(tail(string(out), 3000))
	}
	return b.String()
}

// indexLeftovers describes what the secondary keeps beside its tree: the
// staging area and index entries with no link in the tree.
func indexLeftovers(s string) string {
	var b strings.Builder
	for _, n := range stagingLeft(s) {
		var st unix.Stat_t
		unix.Lstat(filepath.Join(s, ".georep", "tmp", n), &st)
		fmt.Fprintf(&b, "\n  staged %s (mode %o, %d links)", n, st.Mode, st.Nlink)
	}
	ids, _ := filepath.Glob(filepath.Join(s, ".georep", "ids", "*", "*"))
	for _, p := range ids {
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Nlink == 1 {
			fmt.Fprintf(&b, "\n  index entry %s (mode %o) has no link in the tree", filepath.Base(p), st.Mode)
		}
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// stagingLeft lists what is left in the secondary's staging area.
func stagingLeft(s string) []string {
	ents, _ := os.ReadDir(filepath.Join(s, ".georep", "tmp"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// keepTrees copies a failed case's trees to $GEOREP_MODEL_KEEP/<name> (cp -a)
// for a post-mortem; the loop mounts they live on go away with the test.
func keepTrees(t testing.TB, dir string) {
	keep := os.Getenv("GEOREP_MODEL_KEEP")
	if keep == "" {
		return
	}
	dst := filepath.Join(keep, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name()))
	os.RemoveAll(dst)
	os.MkdirAll(dst, 0o755)
	for _, side := range []string{"P", "S"} { // inode numbers identify primary files in IDs
		out, _ := exec.Command("find", filepath.Join(dir, side), "-printf", "%i %n %y %P\\n").Output()
		os.WriteFile(filepath.Join(dst, side+".inodes"), out, 0o644)
	}
	if out, err := exec.Command("cp", "-a", dir+"/.", dst).CombinedOutput(); err != nil {
		t.Logf("keep %s: %v %s", dst, err, out)
		return
	}
	t.Logf("trees kept in %s", dst)
}

// ---------------------------------------------------------------------------
// Seeds

// modelSeeds returns the seeds to run: only $env when it is set, else n
// seeds from the clock.
func modelSeeds(t *testing.T, env string, n int) []int64 {
	if v := os.Getenv(env); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, v, err)
		}
		return []int64{s}
	}
	base := time.Now().UnixNano() % 1e12
	seeds := make([]int64, n)
	for i := range seeds {
		seeds[i] = base + int64(i)*7919
	}
	return seeds
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ---------------------------------------------------------------------------
// The model test

// modelTotals aggregates across sequences, for the final log line.
type modelTotals struct {
	mu                                   sync.Mutex
	ops, steps, checked, moved, sequence int
}

// TestModelRandomSequences: 100 random sequences (GEOREP_MODEL_SEQUENCES to
// change; GEOREP_MODEL_SEED=<seed> for one) of 5-40 operations on a primary
// of tens of entries, with replication steps at random points between them.
// After every step the secondary must be in sync (georep verify) and hold
// unchanged files in the same inodes as before (identity); after the last,
// verify.py must agree, a further step must have nothing to do, and the
// staging area must be empty.
func TestModelRandomSequences(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	base := testutil.LoopExt4(t, 1024)
	seeds := modelSeeds(t, "GEOREP_MODEL_SEED", envInt("GEOREP_MODEL_SEQUENCES", 100))
	var tot modelTotals
	start := time.Now()
	for i, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(base, fmt.Sprintf("seq%03d", i))
			runModelSequence(t, bin, dir, seed, &tot)
			if !t.Failed() {
				os.RemoveAll(dir)
			}
		})
	}
	t.Cleanup(func() {
		t.Logf("%d sequences, %d operations, %d replication steps in %s; identity checked on %d unchanged files (%d of them moved)",
			tot.sequence, tot.ops, tot.steps, time.Since(start).Round(time.Millisecond), tot.checked, tot.moved)
		if tot.sequence >= 20 && tot.moved == 0 && !t.Failed() {
			t.Error("no renamed file was ever checked for identity: the generator does not exercise it")
		}
	})
}

// runModelSequence runs one seeded sequence in dir and adds what it did to tot.
func runModelSequence(t *testing.T, bin, dir string, seed int64, tot *modelTotals) {
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	g := newGen(p, seed)
	var rep replicator = newLocalSync(bin, p, s, st)
	id := &identity{}
	ops, steps := 0, 0
	defer func() {
		tot.mu.Lock()
		tot.ops += ops
		tot.steps += steps
		tot.checked += id.checked
		tot.moved += id.moved
		tot.sequence++
		tot.mu.Unlock()
	}()
	reproduce := fmt.Sprintf("reproduce: GEOREP_MODEL_SEED=%d go test ./internal/e2e -run 'TestModelRandomSequences' -v", seed)
	fail := func(format string, args ...any) {
		t.Helper()
		keepTrees(t, dir)
		t.Fatalf("seed %d: %s\noperations:\n  %s\n%s", seed, fmt.Sprintf(format, args...), strings.Join(g.log, "\n  "), reproduce)
	}
	stepAndCheck := func() {
		t.Helper()
		steps++
		g.logf("-- replication step %d", steps)
		res := rep.Step(t)
		if !res.OK() {
			fail("replication step %d failed: %s", steps, res)
		}
		if ok, out := georepVerify(t, bin, p, s); !ok {
			fail("after step %d georep verify finds differences:\n%s", steps, out)
		}
		if err := id.check(g, s, res.Sum); err != nil {
			fail("after step %d: identity:\n%s", steps, err)
		}
	}
	g.populate(8 + g.rng.Intn(15))
	stepAndCheck()
	n := 5 + g.rng.Intn(36)
	for range n {
		g.step()
		ops++
		if g.rng.Intn(5) == 0 {
			stepAndCheck()
		}
	}
	stepAndCheck()
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns", "--dir-mtime"); !ok {
		fail("verify.py finds differences:\n%s", out)
	}
	before := indexLeftovers(s)
	again := rep.Step(t)
	if !again.OK() || again.Sum.Stats.Entries != 0 || again.Sum.Stats.DataFiles != 0 {
		fail("a step with no change did something: %s\nits crawl:\n%s\nleft by the step before: %s", again, crawlDump(bin, st), before)
	}
	if left := stagingLeft(s); len(left) > 0 {
		fail("staging area not empty after convergence: %q", left)
	}
	steps++
}

// treeHashes returns the SHA-256 of every regular file under root (but
// .georep), keyed by digest.
func treeHashes(t testing.TB, root string, into map[[32]byte]bool) {
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if info.IsDir() && filepath.Base(p) == ".georep" && filepath.Dir(p) == root {
			return filepath.SkipDir
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err == nil {
				into[sha256.Sum256(b)] = true
			}
		}
		return nil
	})
}

// tornFiles lists the regular files of the secondary whose content the
// primary never had at the start of a step: torn (partly written) files
// under a final name.
func tornFiles(t testing.TB, sec string, versions map[[32]byte]bool) []string {
	var torn []string
	filepath.Walk(sec, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if info.IsDir() && filepath.Base(p) == ".georep" && filepath.Dir(p) == sec {
			return filepath.SkipDir
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err == nil && !versions[sha256.Sum256(b)] {
				rel, _ := filepath.Rel(sec, p)
				torn = append(torn, fmt.Sprintf("%q (%d bytes)", rel, len(b)))
			}
		}
		return nil
	})
	return torn
}

// ---------------------------------------------------------------------------
// Crash trials

// crashTrial runs one seeded trial: a populated primary, a first sync cut
// by a fault, random operations and churn, kills of later syncs at random
// points; after each kill nothing torn may be visible on the secondary, and
// an undisturbed step must converge.
func crashTrial(t *testing.T, bin, dir string, seed int64, mk func(p, s, st string) replicator, faults []fault) {
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	rng := rand.New(rand.NewSource(seed))
	testutil.Workload(t, "populate", p, "--files", strconv.Itoa(300+rng.Intn(900)), "--dirs", strconv.Itoa(5+rng.Intn(30)),
		"--seed", strconv.FormatInt(seed%100000, 10))
	g := newGen(p, seed)
	rep := mk(p, s, st)
	versions := map[[32]byte]bool{}
	var events []string
	reproduce := fmt.Sprintf("reproduce: GEOREP_CRASH_SEED=%d go test ./internal/e2e -run '%s' -v", seed, t.Name()[:strings.IndexByte(t.Name()+"/", '/')])
	fail := func(format string, args ...any) {
		t.Helper()
		keepTrees(t, dir)
		t.Fatalf("seed %d: %s\nevents:\n  %s\noperations:\n  %s\n%s", seed, fmt.Sprintf(format, args...),
			strings.Join(events, "\n  "), strings.Join(g.log, "\n  "), reproduce)
	}
	// est is how long a step of this kind runs when nothing stops it: kill
	// delays are spread log-uniformly up to a little beyond it, so that
	// kills land in the handshake, the crawl, the entry, data and metadata
	// phases and at the stime commit. A step that finished before its kill
	// tells the real duration.
	est := 150 * time.Millisecond
	faulty := func(round int) {
		treeHashes(t, p, versions)
		f := faults[rng.Intn(len(faults))]
		lo, hi := math.Log(float64(2*time.Millisecond)), math.Log(float64(est)*1.3)
		delay := time.Duration(math.Exp(lo + rng.Float64()*(hi-lo)))
		res := rep.StepWithFault(t, delay, f)
		events = append(events, fmt.Sprintf("round %d: %s after %s (hit: %v): exit %d in %s", round, f, delay.Round(10*time.Microsecond), res.Hit, res.Exit, res.Elapsed.Round(time.Millisecond)))
		if !res.Hit {
			est = max(res.Elapsed, 20*time.Millisecond)
			if !res.OK() {
				fail("a step that no fault hit failed: %s", res)
			}
		}
		if torn := tornFiles(t, s, versions); len(torn) > 0 {
			fail("after %s: files on the secondary with content the primary never had (torn):\n  %s", f, strings.Join(torn, "\n  "))
		}
	}
	converge := func(what string) {
		t.Helper()
		treeHashes(t, p, versions)
		res := rep.Step(t)
		events = append(events, fmt.Sprintf("%s: clean step exit %d in %s", what, res.Exit, res.Elapsed.Round(time.Millisecond)))
		if !res.OK() {
			fail("%s: the step after the faults did not converge: %s", what, res)
		}
		if ok, out := georepVerify(t, bin, p, s); !ok {
			fail("%s: georep verify:\n%s", what, out)
		}
	}
	// A first sync cut short, then again; then converge.
	faulty(0)
	faulty(1)
	converge("initial")
	for round := 2; round < 5; round++ {
		// The churn only on the populated tree: it renames and removes
		// directories named f*, and trips over such directories nested by
		// the generator.
		if round == 2 && rng.Intn(3) != 0 {
			testutil.Workload(t, "churn", p, "--scale", fmt.Sprintf("%.2f", 0.02+rng.Float64()*0.08), "--seed", strconv.Itoa(rng.Intn(1000)))
		}
		for range 5 + rng.Intn(30) {
			g.step()
		}
		faulty(round)
		if rng.Intn(2) == 0 {
			faulty(round)
		}
	}
	converge("final")
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		fail("verify.py finds differences after convergence:\n%s", out)
	}
	before := indexLeftovers(s)
	again := rep.Step(t)
	if !again.OK() || again.Sum.Stats.Entries != 0 || again.Sum.Stats.DataFiles != 0 {
		fail("a step with no change did something: %s\nits crawl:\n%s\nleft by the step before: %s", again, crawlDump(bin, st), before)
	}
	if left := stagingLeft(s); len(left) > 0 {
		fail("staging area not empty after convergence: %q", left)
	}
	t.Logf("seed %d:\n  %s", seed, strings.Join(events, "\n  "))
}

// TestModelCrashTrials: 20 trials (GEOREP_CRASH_TRIALS; GEOREP_CRASH_SEED
// for one) of SIGKILL of `georep sync` to a local secondary at random points.
func TestModelCrashTrials(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	base := testutil.LoopExt4(t, 2048)
	for i, seed := range modelSeeds(t, "GEOREP_CRASH_SEED", envInt("GEOREP_CRASH_TRIALS", 20)) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir := filepath.Join(base, fmt.Sprintf("trial%02d", i))
			crashTrial(t, bin, dir, seed, func(p, s, st string) replicator { return newLocalSync(bin, p, s, st) },
				[]fault{killReplicator})
			if !t.Failed() {
				os.RemoveAll(dir)
			}
		})
	}
}

// TestModelCrashTrialsSSH: a few trials over a real sshd, killing the
// remote agent or georep sync at random points.
func TestModelCrashTrialsSSH(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	base := testutil.LoopExt4(t, 1024)
	for i, seed := range modelSeeds(t, "GEOREP_CRASH_SEED", envInt("GEOREP_CRASH_SSH_TRIALS", 4)) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir := filepath.Join(base, fmt.Sprintf("trial%02d", i))
			crashTrial(t, bin, dir, seed, func(p, s, st string) replicator { return newSSHSync(bin, p, s, st, sshd) },
				[]fault{killAgent, killAgent, killReplicator})
			if !t.Failed() {
				os.RemoveAll(dir)
			}
		})
	}
}
