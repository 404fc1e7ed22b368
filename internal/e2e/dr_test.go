package e2e

// Disaster recovery end to end: refusals that change nothing, promotion
// fencing the old primary (one-shot sync and daemon session, locally and
// over ssh), and the failback walk-through of the README.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/testutil"
	"golang.org/x/sys/unix"
)

// drSync runs `georep sync` and returns its result.
func drSync(t *testing.T, bin, src, dst, state string, extra ...string) stepResult {
	t.Helper()
	rep := &syncReplicator{bin: bin, src: src, dst: dst, secRoot: dst, stateDir: state, extra: extra}
	return rep.Step(t)
}

// TestRefusalsChangeNothing: a secondary replicated from primary A is
// refused to primary B — `session create` and `sync`, locally and over ssh
// — without --force, and every refusal leaves it (its .georep included)
// byte for byte as it was; a promoted secondary refuses everyone the same
// way; --force and demote then let the right session in.
func TestRefusalsChangeNothing(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	a, b, s, st := filepath.Join(dir, "A"), filepath.Join(dir, "B"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", a, "--files", "200", "--dirs", "6")
	testutil.Workload(t, "populate", b, "--files", "50", "--dirs", "3")
	if res := drSync(t, bin, a, s, st); !res.OK() {
		t.Fatalf("first sync: %s", res)
	}
	sshOpts := []string{"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}
	remote := sshd.UserHost() + ":" + s

	refused := func(what string, wantIn string, run func() (string, int)) {
		t.Helper()
		before := treeDigest(t, s)
		out, code := run()
		if code == 0 {
			t.Errorf("%s was accepted:\n%s", what, out)
		}
		if !strings.Contains(out, wantIn) {
			t.Errorf("%s: the message does not say %q:\n%s", what, wantIn, out)
		}
		if after := treeDigest(t, s); after != before {
			t.Errorf("%s changed the secondary (.georep included)", what)
		}
	}
	create := func(name, src, dst string, extra ...string) func() (string, int) {
		return func() (string, int) {
			out, errs, code := dmGeorep(t, bin, st, append([]string{"session", "create", name, src, dst}, extra...)...)
			return out + errs, code
		}
	}
	syncer := func(src string, extra ...string) func() (string, int) {
		return func() (string, int) {
			res := drSync(t, bin, src, s, st, extra...)
			return res.Stderr, res.Exit
		}
	}
	refused("a local session create for another primary", "--force", create("b-local", b, s))
	refused("a session create over ssh for another primary", "--force", create("b-ssh", b, remote, sshOpts...))
	refused("a local sync from another primary", "--force", syncer(b))
	refused("a sync over ssh from another primary", "--force", func() (string, int) {
		res := (&syncReplicator{bin: bin, src: b, dst: remote, secRoot: s, stateDir: st, extra: sshOpts}).Step(t)
		return res.Stderr, res.Exit
	})

	// Promoted: everyone is refused, the message names the promotion.
	dmMust(t, bin, st, "promote", s)
	os.WriteFile(filepath.Join(s, "written-after-promotion"), []byte("user data\n"), 0o644)
	refused("a local sync into a promoted secondary", "georep demote", syncer(a))
	refused("a sync over ssh into a promoted secondary", "georep demote", func() (string, int) {
		res := (&syncReplicator{bin: bin, src: a, dst: remote, secRoot: s, stateDir: st, extra: sshOpts}).Step(t)
		return res.Stderr, res.Exit
	})
	refused("a forced sync into a promoted secondary", "promoted", syncer(a, "--force"))
	refused("a session create over ssh into a promoted secondary", "promoted", create("a-ssh", a, remote, sshOpts...))

	// Demoted: its own primary is let in again, and the forced other one.
	dmMust(t, bin, st, "demote", s)
	if res := drSync(t, bin, a, s, st); !res.OK() {
		t.Fatalf("sync after demote: %s", res)
	}
	if _, err := os.Lstat(filepath.Join(s, "written-after-promotion")); !os.IsNotExist(err) {
		t.Errorf("the sync after demote kept an entry its primary lacks")
	}
	dmMust(t, bin, st, append([]string{"session", "create", "b-forced", b, remote, "--force"}, sshOpts...)...)
	if res := (&syncReplicator{bin: bin, src: b, dst: remote, secRoot: s, stateDir: st, extra: sshOpts}).Step(t); !res.OK() {
		t.Fatalf("sync of the forced primary: %s", res)
	}
	if ok, out := testutil.VerifyPy(t, b, s, "--mtime-ns"); !ok {
		t.Errorf("after the forced primary's sync:\n%s", out)
	}
}

// TestFailoverFailback is the README's walk-through: P replicates to S over
// ssh with a daemon session; S is promoted and users write there; the old
// primary's one-shot sync and its daemon session are refused and S does not
// change; `georep sync S P --force` brings P up to date adopting what is
// there; P is promoted, S demoted, and the original session P -> S resumes
// without sending the content again.
func TestFailoverFailback(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st, sst := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state"), filepath.Join(dir, "state-S")
	testutil.Workload(t, "populate", p, "--files", "400", "--dirs", "10")
	os.MkdirAll(s, 0o755)
	sshOpts := []string{"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}
	d := dmStartDaemon(t, bin, st)
	dmMust(t, bin, st, append([]string{"session", "create", "dr", p, sshd.UserHost() + ":" + s}, sshOpts...)...)
	dmMust(t, bin, st, "config", "dr", "change-interval", "300ms")
	dmMust(t, bin, st, "session", "start", "dr")
	dmMust(t, bin, st, "checkpoint", "set", "dr", "now")
	dmMust(t, bin, st, "checkpoint", "status", "dr", "--wait", "--timeout", "120s")
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("initial replication:\n%s", out)
	}
	// The primary site goes away (its session stops), S is promoted.
	dmMust(t, bin, st, "session", "stop", "dr")
	t.Logf("$ georep promote S\n%s", dmMust(t, bin, sst, "promote", s, "--wait", "30s"))
	// Users write on S: new files, a changed one, a deleted one, a rename.
	mustWrite(t, filepath.Join(s, "new-on-S.txt"), "written while S was the primary\n")
	var changed, deleted, renamed string
	filepath.WalkDir(s, func(path string, de os.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() || strings.Contains(path, "/.georep/") {
			return nil
		}
		switch {
		case changed == "":
			changed = path
		case deleted == "":
			deleted = path
		case renamed == "":
			renamed = path
		}
		return nil
	})
	f, err := os.OpenFile(changed, os.O_WRONLY|os.O_APPEND, 0)
	mustDo(t, err)
	f.WriteString("appended on S\n")
	f.Close()
	mustDo(t, os.Remove(deleted))
	mustDo(t, os.Rename(renamed, renamed+".renamed-on-S"))
	mustDo(t, unix.Setxattr(filepath.Join(s, "new-on-S.txt"), "user.dr", []byte("on S"), 0))
	before := treeDigest(t, s)

	// The old primary is back: its sync and its session are refused.
	res := (&syncReplicator{bin: bin, src: p, dst: sshd.UserHost() + ":" + s, secRoot: s, stateDir: st, extra: sshOpts}).Step(t)
	if res.Exit == 0 || !strings.Contains(res.Stderr, "promoted") || !strings.Contains(res.Stderr, "georep demote") {
		t.Errorf("the old primary's sync was not refused with a message naming the promotion: %s", res)
	}
	t.Logf("$ georep sync P S   (the old primary)\n%s", strings.TrimSpace(res.Stderr))
	dmMust(t, bin, st, "session", "start", "dr")
	r := dmWaitStatus(t, d, "dr", "Fenced", 60*time.Second, func(r status.Report) bool { return r.Status == status.Fenced })
	if !strings.Contains(r.LastError, "promoted") {
		t.Errorf("the fenced session's error does not name the promotion: %q", r.LastError)
	}
	t.Logf("$ georep status\n%s", dmMust(t, bin, st, "status"))
	if after := treeDigest(t, s); after != before {
		t.Errorf("the promoted site changed while the old primary tried to replicate")
	}
	dmMust(t, bin, st, "session", "stop", "dr")

	// Failback: S -> P, adopting what P has.
	back := (&syncReplicator{bin: bin, src: s, dst: sshd.UserHost() + ":" + p, secRoot: p, stateDir: sst, extra: append([]string{"--force"}, sshOpts...)}).Step(t)
	if !back.OK() {
		t.Fatalf("georep sync S P --force: %s", back)
	}
	t.Logf("failback sync: %d entry ops, %d files (%d bytes) of data, %d bytes on the wire", back.Sum.Stats.Entries, back.Sum.Stats.DataFiles, back.Sum.Stats.DataBytes, back.Sum.Stats.BytesSent)
	if back.Sum.Stats.DataBytes > 1<<20 {
		t.Errorf("the failback sent %d bytes of file data: content P already had was sent again", back.Sum.Stats.DataBytes)
	}
	if ok, out := testutil.VerifyPy(t, s, p, "--mtime-ns"); !ok {
		t.Fatalf("after the failback sync:\n%s", out)
	}
	t.Logf("$ georep promote P\n%s", dmMust(t, bin, st, "promote", p))
	t.Logf("$ georep demote S\n%s", dmMust(t, bin, sst, "demote", s))
	// The original session resumes.
	r0 := dmStatus(t, bin, st, "dr")
	dmMust(t, bin, st, "session", "start", "dr")
	dmWaitStatus(t, d, "dr", "Active", 120*time.Second, func(r status.Report) bool { return r.Status == status.Active })
	mustWrite(t, filepath.Join(p, "after-failback.txt"), "P is the primary again\n")
	dmMust(t, bin, st, "checkpoint", "set", "dr", "now")
	dmMust(t, bin, st, "checkpoint", "status", "dr", "--wait", "--timeout", "120s")
	r1 := dmStatus(t, bin, st, "dr")
	if sent := r1.BytesSynced - r0.BytesSynced; sent > 1<<20 {
		t.Errorf("the resumed session sent %d bytes of file data again", sent)
	}
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Errorf("after the session resumed:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(s, ".georep", "promoted")); !os.IsNotExist(err) {
		t.Errorf("S still fenced after demote")
	}
}

// TestSyncChecksumRepairsDrift: drift on the secondary that a quick check
// cannot see — content changed with size and mtime kept, an xattr added —
// and a file deleted there are all repaired by `georep sync --checksum`,
// sending only what differs.
func TestSyncChecksumRepairsDrift(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "300", "--dirs", "6")
	if res := drSync(t, bin, p, s, st); !res.OK() {
		t.Fatalf("first sync: %s", res)
	}
	var files []string
	filepath.WalkDir(s, func(path string, de os.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && !strings.Contains(path, "/.georep/") {
			if fi, _ := de.Info(); fi != nil && fi.Size() > 0 {
				files = append(files, path)
			}
		}
		return nil
	})
	if len(files) < 3 {
		t.Fatalf("only %d files", len(files))
	}
	// Same size, same mtime, other content.
	drifted := files[0]
	var before unix.Stat_t
	mustDo(t, unix.Lstat(drifted, &before))
	f, err := os.OpenFile(drifted, os.O_WRONLY, 0)
	mustDo(t, err)
	_, err = f.WriteAt([]byte("DRIFT"), 0)
	mustDo(t, err)
	f.Close()
	mustDo(t, unix.UtimesNano(drifted, []unix.Timespec{before.Atim, before.Mtim}))
	mustDo(t, unix.Setxattr(files[1], "user.drift", []byte("added on S"), 0))
	mustDo(t, os.Remove(files[2]))

	plain := drSync(t, bin, p, s, st)
	if !plain.OK() {
		t.Fatalf("sync: %s", plain)
	}
	if ok, _ := testutil.VerifyPy(t, p, s, "--mtime-ns"); ok {
		t.Log("note: the sync without --checksum already repaired everything")
	}
	res := drSync(t, bin, p, s, st, "--checksum")
	if !res.OK() {
		t.Fatalf("sync --checksum: %s", res)
	}
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("after sync --checksum:\n%s", out)
	}
	if ok, out := georepVerify(t, bin, p, s); !ok {
		t.Fatalf("georep verify after sync --checksum:\n%s", out)
	}
	if res.Sum.Stats.DataFiles > 1 {
		t.Errorf("sync --checksum sent %d files; one differed", res.Sum.Stats.DataFiles)
	}
	if _, err := unix.Lgetxattr(files[1], "user.drift", make([]byte, 64)); err == nil {
		t.Errorf("the xattr added on the secondary survived sync --checksum")
	}
}
