package secondary

// Security review harness: drive a real `georep secondary --root` child
// process over pipes, as a hostile primary would.

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/testutil"
)

type child struct {
	cmd    *exec.Cmd
	conn   *protocol.Conn
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *strings.Builder
	done   chan error
}

// spawn starts the agent child; uid<0 keeps the current user.
func spawn(t *testing.T, root string, uid int, extra ...string) *child {
	t.Helper()
	args := append([]string{"secondary", "--root", root, "-v"}, extra...)
	cmd := exec.Command(testutil.GeorepBin(t), args...)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	c := &child{cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	var err error
	c.stdin, _ = cmd.StdinPipe()
	c.stdout, _ = cmd.StdoutPipe()
	cmd.Stderr = c.stderr
	if err = cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill() // our own child, by PID
			<-c.done
		}
	})
	return c
}

type rw struct {
	io.Reader
	io.WriteCloser
}

func (c *child) connect(t *testing.T, h *protocol.Hello) (*protocol.Conn, protocol.Message, error) {
	t.Helper()
	c.conn = protocol.NewConn(rw{c.stdout, c.stdin})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := c.conn.Call(ctx, h)
	return c.conn, m, err
}

func rootIDFor() fileid.ID {
	return fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})
}

func helloMsg() *protocol.Hello {
	return &protocol.Hello{Version: protocol.Version, Software: "attack", RootID: rootIDFor()}
}

// killedFromOutside reports an agent ended by SIGKILL, which the agent
// never sends itself: on this shared machine, other tests' process-tree
// cleanups (by PID, which this package's many short-lived agents recycle
// fast) have been seen to hit it.
func killedFromOutside(werr error) bool {
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// start spawns and handshakes (once more if the first agent was killed
// from outside before it answered).
func start(t *testing.T, root string, uid int) (*child, *protocol.Conn, fileid.ID) {
	t.Helper()
	c := spawn(t, root, uid)
	conn, m, err := c.connect(t, helloMsg())
	if err != nil {
		if _, werr := c.exited(time.Second); killedFromOutside(werr) {
			t.Logf("agent SIGKILLed from outside before hello (%v); starting another", werr)
			c = spawn(t, root, uid)
			conn, m, err = c.connect(t, helloMsg())
		}
	}
	if err != nil {
		_, werr := c.exited(time.Second)
		t.Fatalf("hello: %v (agent: %v; stderr %s)", err, werr, c.stderr.String())
	}
	if _, ok := m.(*protocol.HelloOK); !ok {
		t.Fatalf("hello answered %T", m)
	}
	return c, conn, rootIDFor()
}

func (c *child) exited(d time.Duration) (bool, error) {
	select {
	case err := <-c.done:
		c.done <- err
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

func (c *child) vmHWM() int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

func callT(t *testing.T, conn *protocol.Conn, m protocol.Message, d time.Duration) (protocol.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return conn.Call(ctx, m)
}

// snapshot records names, sizes, modes and mtimes of everything under dir.
func snapshot(dir string) map[string]string {
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info == nil {
			return nil
		}
		var st syscall.Stat_t
		syscall.Lstat(p, &st)
		out[p] = info.Mode().String() + " " + strconv.FormatInt(info.Size(), 10) + " " + strconv.FormatInt(info.ModTime().UnixNano(), 10) +
			" " + strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid)) + " n" + strconv.Itoa(int(st.Nlink)) + " c" + strconv.FormatInt(st.Ctim.Nano(), 10)
		return nil
	})
	return out
}

func diffSnap(t *testing.T, what string, a, b map[string]string) bool {
	t.Helper()
	bad := false
	for k, v := range a {
		if w, ok := b[k]; !ok {
			t.Errorf("%s: %s disappeared (was %s)", what, k, v)
			bad = true
		} else if w != v {
			t.Errorf("%s: %s changed: %s -> %s", what, k, v, w)
			bad = true
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: %s appeared (%s)", what, k, v)
			bad = true
		}
	}
	return bad
}

// canary makes a directory outside the root with a file, a subdir and
// hex-named files (in case an index path is redirected there).
func canary(t *testing.T, base string) string {
	t.Helper()
	c := filepath.Join(base, "canary")
	os.MkdirAll(filepath.Join(c, "sub"), 0o755)
	os.WriteFile(filepath.Join(c, "secret"), []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(c, "sub", "f"), []byte("f"), 0o644)
	return c
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func headStr(s string, n int) string {
	if i := strings.Index(s, "fatal error"); i >= 0 {
		s = s[i:]
	} else if i := strings.Index(s, "panic"); i >= 0 {
		s = s[i:]
	}
	if len(s) > n {
		return s[:n]
	}
	return s
}

// workDir is a scratch directory every user can traverse (t.TempDir's
// parent is 0700, which a non-root agent cannot enter).
func workDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "georep-attack-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
