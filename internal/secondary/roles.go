package secondary

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sys/unix"
)

// Roles: a secondary root is a replica until `georep promote` makes it a
// primary. A promoted root is fenced: every session that would write into
// it is refused, naming the promotion, so an old primary that comes back
// cannot overwrite what users wrote there; `georep demote` undoes it.
// Before anything is created, locked or reset, a session's hello checks the
// root (checkRoot): a refusal changes nothing.

// promotedFile marks a promoted (fenced) root.
const (
	promotedFile = ".georep/promoted"
	promotedName = "promoted"
)

// Promotion is the record `georep promote` leaves in .georep/promoted.
type Promotion struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Root    string    `json:"root"`
	Primary fileid.ID `json:"primary,omitempty"` // the root ID it replicated before
}

// FencedError is the refusal of a session into a promoted root.
type FencedError struct{ P Promotion }

func (e *FencedError) Error() string {
	return fmt.Sprintf("secondary %s was promoted to a primary on %s at %s (georep promote) and is fenced: it accepts no replication into it, so what was written there since is kept; "+
		"to make it a secondary again run 'georep demote %s' on %s (a different primary then needs --force)",
		e.P.Root, e.P.Host, e.P.Time.UTC().Format(time.RFC3339), e.P.Root, e.P.Host)
}

// Is makes a FencedError match protocol.ErrFenced.
func (e *FencedError) Is(target error) bool { return target == protocol.ErrFenced }

// ForeignError is the refusal of a root that holds another primary's
// replica, without --force.
type ForeignError struct {
	Root, Other string
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("secondary %s holds a replica of another primary tree (%s); use --force to make it a replica of this one (its content is adopted by path, what this primary lacks is removed)", e.Root, e.Other)
}

// Is makes a ForeignError match protocol.ErrForeign.
func (e *ForeignError) Is(target error) bool { return target == protocol.ErrForeign }

// codeOf is the protocol error code of a hello refusal.
func codeOf(err error) protocol.ErrorCode {
	switch {
	case errors.Is(err, protocol.ErrFenced):
		return protocol.CodeFenced
	case errors.Is(err, protocol.ErrForeign):
		return protocol.CodeForeign
	}
	return 0
}

// readPromotion reads the promotion record under rootfd (ok false when the
// root is not promoted).
func readPromotion(rootfd int) (Promotion, bool, error) {
	s, err := readSmallFile(rootfd, promotedFile)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return Promotion{}, false, nil
	}
	if err != nil {
		return Promotion{}, false, fmt.Errorf("read %s: %w", promotedFile, err)
	}
	var p Promotion
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		// Unreadable, still a fence: refusing is the safe side.
		return Promotion{Host: "?", Root: "?"}, true, nil
	}
	return p, true, nil
}

// checkRoot is what a hello checks before it writes anything: the root is
// not fenced, and it is not another primary's replica unless force. It
// reports whether the root holds another primary's replica (to be reset).
func checkRoot(rootfd int, root string, rootID fileid.ID, force bool) (foreign bool, err error) {
	p, fenced, err := readPromotion(rootfd)
	if err != nil {
		return false, err
	}
	if fenced {
		if p.Root == "" || p.Root == "?" {
			p.Root = root
		}
		return false, &FencedError{P: p}
	}
	prev, err := readSmallFile(rootfd, rootIDFile)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", rootIDFile, err)
	}
	if other := fileid.ID(strings.TrimSpace(prev)); other != rootID {
		if !force {
			return true, &ForeignError{Root: root, Other: other.Short()}
		}
		return true, nil
	}
	return false, nil
}

// helloCheck answers a Check hello: would the session be accepted, and how
// many entries the root holds. Nothing is created, locked or reset.
func (a *Agent) helloCheck(h *protocol.Hello) (*protocol.HelloOK, error) {
	root := a.opts.Root
	a.readOnly = true
	a.rootID = h.RootID
	ok := &protocol.HelloOK{Version: protocol.Version, Software: a.opts.Software,
		FakeSuper: h.FakeSuper || a.opts.FakeSuper || os.Geteuid() != 0}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		ok.NewRoot = true // created by the first session
		return ok, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open secondary root %s: %w", root, err)
	}
	a.rootFD = fd
	if err := a.openMeta(false); err != nil { // read only: nothing is created
		return nil, err
	}
	foreign, err := checkRoot(fd, root, h.RootID, h.Force)
	if err != nil {
		return nil, err
	}
	if _, err := readSmallFile(fd, rootIDFile); err != nil || foreign {
		ok.NewRoot = true
	} else {
		ok.Stime = a.readStime()
	}
	names, err := readNames(fd, ".")
	if err != nil {
		return nil, fmt.Errorf("read secondary root %s: %w", root, err)
	}
	for _, n := range names {
		if n != metaDir {
			ok.Entries++
		}
	}
	return ok, nil
}

// Promote makes the replica at root a primary and fences it: from now on
// the agent refuses every session that would write into it. It waits up to
// wait for a session still writing there (a lost primary's agent) to let
// go of the root's lock.
func Promote(root string, wait time.Duration) (Promotion, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Promotion{}, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(fd)
	if p, fenced, err := readPromotion(fd); err != nil {
		return Promotion{}, err
	} else if fenced {
		return p, fmt.Errorf("%s is already promoted (on %s at %s)", root, p.Host, p.Time.UTC().Format(time.RFC3339))
	}
	if err := unix.Mkdirat(fd, metaDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return Promotion{}, fmt.Errorf("create %s/%s: %w", root, metaDir, err)
	}
	mfd, err := openMetaDir(fd, root)
	if err != nil {
		return Promotion{}, err
	}
	defer unix.Close(mfd)
	unlock, err := lockExclusive(mfd, root, wait)
	if err != nil {
		return Promotion{}, err
	}
	defer unlock()
	host, _ := os.Hostname()
	p := Promotion{Time: time.Now().UTC().Truncate(time.Second), Host: host, Root: root}
	if prev, err := readSmallFile(fd, rootIDFile); err == nil {
		p.Primary = fileid.ID(strings.TrimSpace(prev))
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := writeFileAtomic(mfd, promotedName, append(b, '\n')); err != nil {
		return Promotion{}, err
	}
	return p, unix.Fsync(mfd)
}

// Demote makes a promoted root a secondary again. Its stime is forgotten:
// the next session crawls the whole tree (adopting what is there), since
// what users wrote while it was a primary is covered by no stime.
func Demote(root string, wait time.Duration) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(fd)
	if _, fenced, err := readPromotion(fd); err != nil {
		return err
	} else if !fenced {
		return fmt.Errorf("%s is not promoted (no %s)", root, promotedFile)
	}
	mfd, err := openMetaDir(fd, root)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	unlock, err := lockExclusive(mfd, root, wait)
	if err != nil {
		return err
	}
	defer unlock()
	if err := unix.Unlinkat(mfd, stimeName, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forget the stime: %w", err)
	}
	if err := unix.Unlinkat(mfd, promotedName, 0); err != nil {
		return fmt.Errorf("remove %s: %w", promotedFile, err)
	}
	return unix.Fsync(mfd)
}

// RootRole describes a root for status: promoted (with the record), or not.
func RootRole(root string) (Promotion, bool, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Promotion{}, false, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(fd)
	return readPromotion(fd)
}

// openMetaDir opens the root's .georep without following a symlink there:
// a role change writes only through it.
func openMetaDir(rootfd int, root string) (int, error) {
	mfd, err := openBeneath(rootfd, metaDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return -1, fmt.Errorf("%s/%s is not a directory georep can use: %w", root, metaDir, err)
	}
	return mfd, nil
}

// lockExclusive takes the root's writer lock (the one sessions take), so
// a role change never runs beside a session writing there. metafd is the
// root's .georep.
func lockExclusive(metafd int, root string, wait time.Duration) (func(), error) {
	fd, err := unix.Openat(metafd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s/%s: %w", root, lockFile, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			_, pid := readLockHolder(fd)
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("a georep session (pid %d) is writing %s; stop it (or wait for its primary's link to time out) and try again", pid, root)
			}
			return nil, fmt.Errorf("lock %s/%s: %w", root, lockFile, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
