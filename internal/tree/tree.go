// Package tree owns the in-memory description of a file tree that both sides
// exchange: one Entry per directory entry (a "slot": parent ID + name) with the
// file's identity, type and metadata. The crawl, the planner, the secondary's
// listing and verify all speak in Entries.
package tree

import (
	"fmt"
	"io/fs"

	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// Kind is the type of a file.
type Kind uint8

// Kinds of files. The values are part of the wire protocol and changelogs.
const (
	KindNone Kind = iota
	KindRegular
	KindDir
	KindSymlink
	KindFIFO
	KindChar
	KindBlock
	KindSocket
)

var kindNames = [...]string{"none", "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// KindOf maps a stat mode (S_IFMT bits) to a Kind.
func KindOf(mode uint32) Kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return KindRegular
	case unix.S_IFDIR:
		return KindDir
	case unix.S_IFLNK:
		return KindSymlink
	case unix.S_IFIFO:
		return KindFIFO
	case unix.S_IFCHR:
		return KindChar
	case unix.S_IFBLK:
		return KindBlock
	case unix.S_IFSOCK:
		return KindSocket
	}
	return KindNone
}

// KindOfFileMode maps an io/fs mode to a Kind.
func KindOfFileMode(m fs.FileMode) Kind {
	switch {
	case m.IsRegular():
		return KindRegular
	case m.IsDir():
		return KindDir
	case m&fs.ModeSymlink != 0:
		return KindSymlink
	case m&fs.ModeNamedPipe != 0:
		return KindFIFO
	case m&fs.ModeCharDevice != 0:
		return KindChar
	case m&fs.ModeDevice != 0:
		return KindBlock
	case m&fs.ModeSocket != 0:
		return KindSocket
	}
	return KindNone
}

// IFMT returns the S_IFMT bits for the kind.
func (k Kind) IFMT() uint32 {
	switch k {
	case KindRegular:
		return unix.S_IFREG
	case KindDir:
		return unix.S_IFDIR
	case KindSymlink:
		return unix.S_IFLNK
	case KindFIFO:
		return unix.S_IFIFO
	case KindChar:
		return unix.S_IFCHR
	case KindBlock:
		return unix.S_IFBLK
	case KindSocket:
		return unix.S_IFSOCK
	}
	return 0
}

// Slot names a directory entry: the ID of its parent directory and its name.
// A name is any byte string except "", ".", "..", or one holding '/' or NUL.
type Slot struct {
	Parent fileid.ID
	Name   string
}

func (s Slot) String() string { return fmt.Sprintf("%s/%q", s.Parent.Short(), s.Name) }

// Meta is the metadata georep carries for a file.
type Meta struct {
	Mode  uint32 // permission bits including setuid, setgid and sticky (07777)
	UID   uint32
	GID   uint32
	Atime int64 // ns since the epoch
	Mtime int64 // ns since the epoch
}

// Entry is one directory entry and the file it names.
type Entry struct {
	Slot
	ID     fileid.ID // empty on the secondary for an entry georep did not create ("unknown")
	Kind   Kind
	Meta   Meta
	Size   int64
	Ctime  int64  // ns; primary only, for "changed since stime"
	Nlink  uint32 // link count (on the secondary, not counting georep's index link)
	Rdev   uint64 // device number for KindChar/KindBlock
	Target string // symlink target, verbatim
	Ino    uint64 // inode number on the side that listed it (local use only)
}

// ValidName reports whether name can be a directory entry name.
func ValidName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}
