// Package fileid owns file identity on the primary: the kernel file handle
// (filesystem id + handle type + handle bytes, as name_to_handle_at(2) and
// fanotify FID records give it), hex-encoded. Hardlinks share an ID, a rename
// keeps it, and a deleted-and-recreated name gets a new one (the handle carries
// the inode generation), which is what lets the secondary address files by ID
// the way Gluster addresses them by GFID.
package fileid

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ID is a hex-encoded file identity: 8 bytes of fsid, 4 bytes of handle type
// (little endian) and the handle bytes. The zero value means "no ID".
type ID string

// FSID is a filesystem id as statfs(2) and fanotify report it.
type FSID [8]byte

// ErrStale reports that a handle no longer names a live file (ESTALE).
var ErrStale = errors.New("file handle is stale (the file no longer exists)")

// Make builds an ID from its parts.
func Make(fsid FSID, handleType int32, handle []byte) ID {
	b := make([]byte, 0, 12+len(handle))
	b = append(b, fsid[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(handleType))
	b = append(b, handle...)
	return ID(hex.EncodeToString(b))
}

// Parse checks that s is a well-formed ID.
func Parse(s string) (ID, error) {
	if len(s) < 2*13 || len(s)%2 != 0 || len(s) > 2*(12+maxHandleSize) {
		return "", fmt.Errorf("invalid file id %q: bad length", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("invalid file id %q: not lower-case hex", s)
		}
	}
	return ID(s), nil
}

// Valid reports whether id is well formed.
func (id ID) Valid() bool { _, err := Parse(string(id)); return err == nil }

// Parts decodes an ID into its filesystem id, handle type and handle bytes.
func (id ID) Parts() (FSID, int32, []byte, error) {
	var fsid FSID
	b, err := hex.DecodeString(string(id))
	if err != nil || len(b) < 13 {
		return fsid, 0, nil, fmt.Errorf("invalid file id %q", string(id))
	}
	copy(fsid[:], b[:8])
	return fsid, int32(binary.LittleEndian.Uint32(b[8:12])), b[12:], nil
}

// FS returns the filesystem id part of the ID.
func (id ID) FS() FSID { f, _, _, _ := id.Parts(); return f }

// Short is an abbreviation for logs.
func (id ID) Short() string {
	if len(id) > 16 {
		return string(id[len(id)-16:])
	}
	return string(id)
}

// FSIDOf returns the filesystem id of the filesystem holding fd.
func FSIDOf(fd int) (FSID, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return FSID{}, fmt.Errorf("fstatfs: %w", err)
	}
	var f FSID
	binary.LittleEndian.PutUint32(f[0:4], uint32(st.Fsid.Val[0]))
	binary.LittleEndian.PutUint32(f[4:8], uint32(st.Fsid.Val[1]))
	return f, nil
}

// Of returns the ID of name relative to the directory dirfd, without following
// a final symlink. fsid must be the id of the filesystem that holds the entry
// (callers walking one filesystem compute it once).
func Of(fsid FSID, dirfd int, name string) (ID, error) {
	flags := 0
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	h, _, err := unix.NameToHandleAt(dirfd, name, flags)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at %q: %w", name, err)
	}
	return Make(fsid, h.Type(), h.Bytes()), nil
}

// OfPath returns the ID of a path (a final symlink is not followed).
func OfPath(path string) (ID, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	fsid, err := FSIDOf(fd)
	if err != nil {
		return "", err
	}
	return Of(fsid, fd, "")
}

// Opener opens files by ID on one mounted filesystem. It needs
// CAP_DAC_READ_SEARCH; Available reports whether the kernel allowed it.
type Opener struct {
	mountFD int
	fsid    FSID
	ok      bool
}

// NewOpener prepares opening by handle on the filesystem that holds root.
// The returned Opener keeps a descriptor of root open until Close.
func NewOpener(root string) (*Opener, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // open_by_handle_at refuses an O_PATH mount fd
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	fsid, err := FSIDOf(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	o := &Opener{mountFD: fd, fsid: fsid}
	// Probe: open the root itself by its own handle.
	if id, err := Of(fsid, fd, ""); err == nil {
		if f, err := o.open(id, unix.O_PATH); err == nil {
			f.Close()
			o.ok = true
		}
	}
	return o, nil
}

// Available reports whether open_by_handle_at works here (root or
// CAP_DAC_READ_SEARCH, and a filesystem that supports export).
func (o *Opener) Available() bool { return o != nil && o.ok }

// FSID is the filesystem id of the opener's filesystem.
func (o *Opener) FSID() FSID { return o.fsid }

// Open opens the file with the given ID. flags are open(2) flags; O_CLOEXEC
// is added. A symlink can only be opened with O_PATH. ErrStale is returned
// when the file no longer exists.
func (o *Opener) Open(id ID, flags int) (*os.File, error) {
	if !o.Available() {
		return nil, fmt.Errorf("open by handle: %w", unix.EPERM)
	}
	return o.open(id, flags)
}

func (o *Opener) open(id ID, flags int) (*os.File, error) {
	fsid, typ, hb, err := id.Parts()
	if err != nil {
		return nil, err
	}
	if fsid != o.fsid {
		return nil, fmt.Errorf("open by handle %s: id is on another filesystem", id.Short())
	}
	fd, err := unix.OpenByHandleAt(o.mountFD, unix.NewFileHandle(typ, hb), flags|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("open by handle %s: %w", id.Short(), ErrStale)
		}
		return nil, fmt.Errorf("open by handle %s: %w", id.Short(), err)
	}
	return os.NewFile(uintptr(fd), "handle:"+id.Short()), nil
}

// Alive reports whether the file with this ID still exists. It returns true
// when that cannot be decided (no handle support), so callers stay on the
// side of keeping data.
func (o *Opener) Alive(id ID) bool {
	if !o.Available() {
		return true
	}
	f, err := o.open(id, unix.O_PATH)
	if err != nil {
		return !errors.Is(err, ErrStale)
	}
	f.Close()
	return true
}

// Close releases the mount descriptor.
func (o *Opener) Close() error {
	if o == nil {
		return nil
	}
	return unix.Close(o.mountFD)
}

// maxHandleSize is MAX_HANDLE_SZ from <linux/exportfs.h>.
const maxHandleSize = 128
