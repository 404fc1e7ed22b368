package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/internal/testutil"
	"golang.org/x/sys/unix"
)

func getx(p, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func setx(t *testing.T, p, name, v string) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("%s: this filesystem holds no %s", p, name)
		}
		t.Fatalf("setxattr %s %s: %v", p, name, err)
	}
}

// TestSyncXattrsSwitchedBackOn: after a sync without xattrs, a sync with
// them sends the xattrs it skipped, though the files did not change.
func TestSyncXattrsSwitchedBackOn(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "st")
	os.MkdirAll(filepath.Join(p, "d"), 0o755)
	os.WriteFile(filepath.Join(p, "d", "f"), []byte("x"), 0o644)
	setx(t, filepath.Join(p, "d", "f"), "user.color", "blue")
	setx(t, filepath.Join(p, "d"), "user.kind", "dir")
	runSync(t, bin, p, s, "--state-dir", st, "--no-xattrs")
	if _, err := getx(filepath.Join(s, "d", "f"), "user.color"); err == nil {
		t.Fatal("--no-xattrs sent an xattr")
	}
	runSync(t, bin, p, s, "--state-dir", st)
	for path, want := range map[string]string{"d/f": "blue", "d": "dir"} {
		name := map[string]string{"d/f": "user.color", "d": "user.kind"}[path]
		if v, err := getx(filepath.Join(s, path), name); err != nil || v != want {
			t.Errorf("%s %s on the secondary: %q, %v", path, name, v, err)
		}
	}
	if out, errOut, code := georep(t, bin, "verify", p, s); code != 0 {
		t.Errorf("verify: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSyncNoACLs: with --no-acls (the session key sync-acls false) the
// secondary's files have no ACLs, and the other xattrs still travel.
func TestSyncNoACLs(t *testing.T) {
	setfacl, err := exec.LookPath("setfacl")
	if err != nil {
		t.Skip("no setfacl")
	}
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "st")
	os.MkdirAll(p, 0o755)
	f := filepath.Join(p, "f")
	os.WriteFile(f, []byte("x"), 0o640)
	if out, err := exec.Command(setfacl, "-m", "u:nobody:r", f).CombinedOutput(); err != nil {
		t.Skipf("setfacl: %v %s", err, out)
	}
	setx(t, f, "user.note", "kept")
	runSync(t, bin, p, s, "--state-dir", st, "--no-acls")
	if _, err := getx(filepath.Join(s, "f"), "system.posix_acl_access"); err == nil {
		t.Error("--no-acls: the secondary's file has an ACL")
	}
	if v, _ := getx(filepath.Join(s, "f"), "user.note"); v != "kept" {
		t.Errorf("user.note %q", v)
	}
	if _, errOut, code := georep(t, bin, "verify", p, s, "--no-acls"); code != 0 {
		t.Errorf("verify --no-acls: exit %d %s", code, errOut)
	}
	// Back on: the ACL is sent though the file did not change.
	runSync(t, bin, p, s, "--state-dir", st)
	if _, err := getx(filepath.Join(s, "f"), "system.posix_acl_access"); err != nil {
		t.Errorf("ACLs back on: the ACL did not arrive: %v", err)
	}
}

// TestFakeSuperKeepsSecurityAndTrusted: a fake-super secondary keeps
// security.* and trusted.* under user.georep. (as rsync --fake-super keeps
// them under user.rsync.), georep verify --fake-super reads them back and
// passes, and it fails when one differs. As root, verify compares
// trusted.* too.
func TestFakeSuperKeepsSecurityAndTrusted(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "st")
	os.MkdirAll(p, 0o755)
	f := filepath.Join(p, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	setx(t, f, "security.georep-test", "label")
	setx(t, f, "trusted.georep-test", "secret")
	runSync(t, bin, p, s, "--state-dir", st, "--fake-super")
	sf := filepath.Join(s, "f")
	for name, want := range map[string]string{"user.georep.security.georep-test": "label", "user.georep.trusted.georep-test": "secret"} {
		if v, err := getx(sf, name); err != nil || v != want {
			t.Errorf("%s on the fake-super secondary: %q, %v", name, v, err)
		}
	}
	if _, err := getx(sf, "trusted.georep-test"); err == nil {
		t.Error("the fake-super secondary set a real trusted.* attribute")
	}
	if out, errOut, code := georep(t, bin, "verify", p, s, "--fake-super"); code != 0 {
		t.Errorf("verify --fake-super: exit %d\n%s%s", code, out, errOut)
	}
	setx(t, f, "trusted.georep-test", "changed")
	if out, _, code := georep(t, bin, "verify", p, s, "--fake-super"); code == 0 || !strings.Contains(out, "trusted.georep-test") {
		t.Errorf("verify --fake-super missed a changed trusted.* attribute: exit %d\n%s", code, out)
	}

	// A root secondary: trusted.* is compared by verify.
	s2 := filepath.Join(dir, "S2")
	runSync(t, bin, p, s2, "--state-dir", st)
	if _, _, code := georep(t, bin, "verify", p, s2); code != 0 {
		t.Error("verify of a root secondary fails")
	}
	setx(t, filepath.Join(s2, "f"), "trusted.georep-test", "tampered")
	if out, _, code := georep(t, bin, "verify", p, s2); code == 0 || !strings.Contains(out, "trusted.georep-test") {
		t.Errorf("verify does not compare trusted.*: exit %d\n%s", code, out)
	}
}

// TestNonRootSecondaryKeepsSecurityXattrs: a root primary, a secondary
// reached over ssh as a user who is not root (fake-super of itself): the
// primary's security.* and trusted.* xattrs are kept under user.georep.,
// the sync lists no failure, and georep verify --fake-super passes.
func TestNonRootSecondaryKeepsSecurityXattrs(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{User: testutil.TestUserName()})
	p, s, st := userTree(t)
	chownUser(t, s)
	f := filepath.Join(p, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	setx(t, f, "security.georep-test", "label")
	setx(t, f, "trusted.georep-test", "secret")
	setx(t, f, "user.plain", "u")
	sum := runSync(t, bin, p, sshd.UserHost()+":"+s, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin)
	if sum.Stats.Failures != 0 {
		t.Errorf("failures: %+v", sum.Failures)
	}
	sf := filepath.Join(s, "f")
	for name, want := range map[string]string{"user.georep.security.georep-test": "label", "user.georep.trusted.georep-test": "secret", "user.plain": "u"} {
		if v, err := getx(sf, name); err != nil || v != want {
			t.Errorf("%s on the non-root secondary: %q, %v", name, v, err)
		}
	}
	if out, errOut, code := georep(t, bin, "verify", p, s, "--fake-super"); code != 0 {
		t.Errorf("verify --fake-super: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSyncRemovesXattrAddedOnSecondary: an xattr added (or changed) on the
// secondary alone is undone by the next sync; a sync after which nothing
// changed anywhere sends no metadata again.
func TestSyncRemovesXattrAddedOnSecondary(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "st")
	os.MkdirAll(filepath.Join(p, "d"), 0o755)
	for i := range 50 {
		os.WriteFile(filepath.Join(p, "d", fmt.Sprintf("f%02d", i)), []byte("x"), 0o644)
	}
	setx(t, filepath.Join(p, "d", "f00"), "user.color", "blue")
	runSync(t, bin, p, s, "--state-dir", st)
	again := runSync(t, bin, p, s, "--state-dir", st)
	if again.Stats.Metadata > 2 {
		t.Errorf("a sync with no change re-sent metadata of %d entries", again.Stats.Metadata)
	}
	setx(t, filepath.Join(s, "d", "f01"), "user.added", "on the secondary")
	setx(t, filepath.Join(s, "d", "f00"), "user.color", "red")
	runSync(t, bin, p, s, "--state-dir", st)
	if v, err := getx(filepath.Join(s, "d", "f01"), "user.added"); err == nil {
		t.Errorf("the xattr added on the secondary survived the sync (%q)", v)
	}
	if v, _ := getx(filepath.Join(s, "d", "f00"), "user.color"); v != "blue" {
		t.Errorf("user.color changed on the secondary is %q after the sync, want blue", v)
	}
	if out, errOut, code := georep(t, bin, "verify", p, s); code != 0 {
		t.Errorf("verify: exit %d\n%s%s", code, out, errOut)
	}
}
