package xattr

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Source reads the attributes of one file, through a descriptor or through
// a path whose final symlink is not followed. Verify reads both trees
// through it, locally and on the secondary.
type Source struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
}

// OfFD reads through the descriptor fd.
func OfFD(fd int) Source {
	return Source{
		list: func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		get:  func(n string, b []byte) (int, error) { return unix.Fgetxattr(fd, n, b) },
	}
}

// OfLink reads through path, not following a final symlink (a symlink's
// own attributes).
func OfLink(path string) Source {
	return Source{
		list: func(b []byte) (int, error) { return unix.Llistxattr(path, b) },
		get:  func(n string, b []byte) (int, error) { return unix.Lgetxattr(path, n, b) },
	}
}

// Names lists the attribute names, growing its buffer as the list needs.
func (s Source) Names() ([]string, error) {
	var small [1024]byte
	buf := small[:]
	for {
		n, err := s.list(buf)
		if err == unix.ERANGE {
			sz, err := s.list(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+256)
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, n := range strings.Split(string(buf[:n]), "\x00") {
			if n != "" {
				names = append(names, n)
			}
		}
		return names, nil
	}
}

// Value reads one attribute's value, growing its buffer as needed.
func (s Source) Value(name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := s.get(name, buf)
		if err == unix.ERANGE {
			sz, err := s.get(name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n:n], nil
	}
}

// Absent reports whether err means the attribute or attributes at all are
// not there (not supported by the filesystem, or no such attribute).
func Absent(err error) bool {
	return err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.ENODATA
}
