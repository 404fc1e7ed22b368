package secondary

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sys/unix"
)

const lockFile = ".georep/lock"

// lockRoot makes this agent the only one writing the root. An agent of the
// same primary that still holds the lock (its link was cut and its session
// has not noticed yet) is superseded: asked to stop, then waited for. An
// agent of another primary is not: the new session is refused.
func (a *Agent) lockRoot(rootID fileid.ID) error {
	fd, err := unix.Openat(a.metaFD, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s: %w", lockFile, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	signalled := false
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return fmt.Errorf("lock %s: %w", lockFile, err)
		}
		holder, pid := readLockHolder(fd)
		if holder != rootID {
			unix.Close(fd)
			return fmt.Errorf("another georep session (pid %d, primary %s) is writing this secondary", pid, holder.Short())
		}
		if !signalled && pid > 0 && pid != os.Getpid() {
			a.log.Warn("an older session of this primary still holds the secondary; stopping it", "pid", pid)
			syscall.Kill(pid, syscall.SIGTERM)
			signalled = true
		}
		if signalled && pid > 0 && time.Until(deadline) < 10*time.Second {
			// SIGTERM cannot interrupt an agent blocked writing to a dead link.
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return fmt.Errorf("an older georep session (pid %d) still holds this secondary", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rec := strconv.Itoa(os.Getpid()) + " " + string(rootID) + "\n"
	unix.Ftruncate(fd, 0)
	unix.Pwrite(fd, []byte(rec), 0)
	a.lockFD = fd
	return nil
}

func readLockHolder(fd int) (fileid.ID, int) {
	buf := make([]byte, 512)
	n, _ := unix.Pread(fd, buf, 0)
	f := strings.Fields(string(buf[:max(n, 0)]))
	if len(f) != 2 {
		return "", 0
	}
	pid, _ := strconv.Atoi(f[0])
	return fileid.ID(f[1]), pid
}

// helloReadOnly opens a session that only reads: the root and its index
// must exist and belong to this primary; nothing is created or cleaned.
func (a *Agent) helloReadOnly(h *protocol.Hello) (*protocol.HelloOK, error) {
	root := a.opts.Root
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open secondary root %s: %w", root, err)
	}
	a.rootFD = fd
	a.rootID = h.RootID
	a.fakeSuper = h.FakeSuper || a.opts.FakeSuper || os.Geteuid() != 0
	if err := a.openMeta(false); err != nil {
		return nil, err
	}
	if prev, err := readSmallFile(a.metaFD, rootIDName); err == nil && fileid.ID(strings.TrimSpace(prev)) != h.RootID {
		return nil, fmt.Errorf("secondary %s holds a replica of another primary tree (%s)", root, strings.TrimSpace(prev))
	}
	if err := a.loadIndex(); err != nil {
		return nil, err
	}
	return &protocol.HelloOK{Version: protocol.Version, Software: a.opts.Software, FakeSuper: a.fakeSuper, Stime: a.readStime()}, nil
}

// writes reports whether a message changes the secondary.
func writes(m protocol.Message) bool {
	switch m.(type) {
	case *protocol.Apply, *protocol.PutFile, *protocol.PutFiles, *protocol.Delta, *protocol.Meta,
		*protocol.StimeSet, *protocol.Limbo, *protocol.Sig, *protocol.FileChunk:
		return true
	}
	return false
}
