// Package xattr owns which extended attributes georep carries and how they
// are read: user.*, security.*, POSIX ACLs (system.posix_acl_access and
// system.posix_acl_default), and trusted.* where both sides are root.
// georep's own user.georep.* (fake-super) attributes never travel.
package xattr

import (
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Synced reports whether georep carries the attribute name; trusted.* only
// when withTrusted (the process may read and write them).
func Synced(name string, withTrusted bool) bool {
	switch {
	case strings.HasPrefix(name, "user.georep."):
		return false
	case strings.HasPrefix(name, "user."), strings.HasPrefix(name, "security."),
		name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true
	case strings.HasPrefix(name, "trusted."):
		return withTrusted
	}
	return false
}

// IsACL reports whether name is a POSIX ACL (the sync-acls key's part).
func IsACL(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// Attr is one attribute.
type Attr struct {
	Name  string
	Value []byte
}

// Read returns the attributes of path (following a final symlink, so a
// /proc/self/fd/N path reaches the file itself) for which keep is true,
// sorted by name. An unreadable or vanished attribute is skipped.
func Read(path string, keep func(name string) bool) []Attr {
	sz, err := unix.Listxattr(path, nil)
	if err != nil || sz == 0 {
		return nil
	}
	buf := make([]byte, sz+256)
	sz, err = unix.Listxattr(path, buf)
	if err != nil {
		return nil
	}
	var out []Attr
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || (keep != nil && !keep(name)) {
			continue
		}
		vsz, err := unix.Getxattr(path, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Getxattr(path, name, v); err != nil {
			continue
		}
		out = append(out, Attr{Name: name, Value: v[:vsz]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
