package xattr

import "strings"

// FakePrefix is where a fake-super secondary (one that is not root) keeps
// the attributes it may not set under their own names: security.X and
// trusted.X are stored as user.georep.security.X and user.georep.trusted.X,
// as rsync --fake-super keeps them under user.rsync. `georep verify
// --fake-super` reads them back under their own names.
const FakePrefix = "user.georep."

// fakeKept reports whether name is one a fake-super secondary stores
// under FakePrefix.
func fakeKept(name string) bool {
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.")
}

// StoredName is the name under which a secondary keeps the attribute name
// the primary sent.
func StoredName(name string, fakeSuper bool) string {
	if fakeSuper && fakeKept(name) {
		return FakePrefix + name
	}
	return name
}

// OriginalName is the primary's name for an attribute stored as stored on
// a fake-super secondary, and whether stored is such an attribute.
func OriginalName(stored string) (string, bool) {
	if !strings.HasPrefix(stored, FakePrefix) {
		return "", false
	}
	n := stored[len(FakePrefix):]
	if !fakeKept(n) {
		return "", false
	}
	return n, true
}

// Managed reports whether a secondary's attribute (as stored) is one the
// agent keeps equal to the primary's: what Synced carries, and on a
// fake-super secondary the FakePrefix copies instead of real security.*
// and trusted.* (which it leaves alone).
func Managed(stored string, fakeSuper bool) bool {
	if !fakeSuper {
		return Synced(stored, true)
	}
	if _, ok := OriginalName(stored); ok {
		return true
	}
	return Synced(stored, false) && !fakeKept(stored)
}
