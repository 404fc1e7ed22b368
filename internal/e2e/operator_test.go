package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
)

// georep runs the binary and returns stdout, stderr and the exit code.
func georep(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("georep %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestHelpOnStdout: `georep --help` is asked for, so it goes to stdout and
// exits 0; a bare `georep` is a mistake and goes to stderr.
func TestHelpOnStdout(t *testing.T) {
	bin := testutil.GeorepBin(t)
	out, errOut, code := georep(t, bin, "--help")
	if code != 0 || !strings.Contains(out, "commands:") || errOut != "" {
		t.Errorf("georep --help: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = georep(t, bin)
	if code != 2 || out != "" || !strings.Contains(errOut, "commands:") {
		t.Errorf("georep: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestSyncTooManyArguments: `georep sync a b c` names the extra argument.
func TestSyncTooManyArguments(t *testing.T) {
	bin := testutil.GeorepBin(t)
	_, errOut, code := georep(t, bin, "sync", "a", "b", "c")
	if code != 2 || !strings.Contains(errOut, `unexpected: "c"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// TestSyncUnknownHostFailsFast: a host name that does not resolve ends the
// sync at once (no retries) with the resolver's message, and nothing on
// stdout looks like a finished sync.
func TestSyncUnknownHostFailsFast(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "P")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	start := time.Now()
	out, errOut, code := georep(t, bin, "sync", src, "georep-no-such-host.invalid:/srv/x", "--state-dir", filepath.Join(dir, "st"))
	took := time.Since(start)
	if code != 1 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if took > 5*time.Second {
		t.Errorf("took %v (retried?)\n%s", took, errOut)
	}
	if strings.Contains(out, "failures") || strings.TrimSpace(out) != "" {
		t.Errorf("a failed sync printed a summary on stdout: %q", out)
	}
	if !strings.Contains(errOut, "does not resolve") || !strings.Contains(errOut, "georep-no-such-host.invalid") ||
		strings.Contains(errOut, "reconnecting") {
		t.Errorf("stderr does not give the resolver's message once:\n%s", errOut)
	}
}

// TestSyncRemoteCommandNotFound: a --remote-georep that does not exist on
// the secondary host ends at once with ssh's exit status 127 and the
// shell's message.
func TestSyncRemoteCommandNotFound(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := t.TempDir()
	src := filepath.Join(dir, "P")
	os.MkdirAll(src, 0o755)
	start := time.Now()
	out, errOut, code := georep(t, bin, "sync", src, sshd.UserHost()+":"+filepath.Join(dir, "S"), "--state-dir", filepath.Join(dir, "st"),
		"--ssh-command", sshd.SSHCommand(), "--remote-georep", "/nonexistent/georep")
	if code != 1 || strings.TrimSpace(out) != "" {
		t.Fatalf("exit %d, stdout %q\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "remote command not found") || !strings.Contains(errOut, "exit status 127") || strings.Contains(errOut, "reconnecting") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestSessionCreateMakesLocalRoot: a local secondary that does not exist
// yet is created, as it is over ssh (and as rsync creates its
// destination); a path that is a file is refused and left alone.
func TestSessionCreateMakesLocalRoot(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	src, dst, st := filepath.Join(dir, "P"), filepath.Join(dir, "new", "S"), filepath.Join(dir, "st")
	os.MkdirAll(src, 0o755)
	out, errOut, code := georep(t, bin, "session", "create", "s1", src, dst, "--state-dir", st)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		t.Errorf("the secondary root was not created: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, errOut, code := georep(t, bin, "session", "create", "s2", src, file, "--state-dir", st); code == 0 || !strings.Contains(errOut, "not a directory") {
		t.Errorf("a file as secondary: exit %d, %s", code, errOut)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the refused file was changed")
	}
}
