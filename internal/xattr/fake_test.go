package xattr

import "testing"

func TestFakeNames(t *testing.T) {
	cases := []struct {
		name   string
		fake   bool
		stored string
	}{
		{"security.selinux", true, "user.georep.security.selinux"},
		{"trusted.overlay.opaque", true, "user.georep.trusted.overlay.opaque"},
		{"user.mime", true, "user.mime"},
		{"system.posix_acl_access", true, "system.posix_acl_access"},
		{"security.selinux", false, "security.selinux"},
	}
	for _, c := range cases {
		got := StoredName(c.name, c.fake)
		if got != c.stored {
			t.Errorf("StoredName(%q, %v) = %q, want %q", c.name, c.fake, got, c.stored)
		}
		if orig, ok := OriginalName(got); c.fake && c.stored != c.name && (!ok || orig != c.name) {
			t.Errorf("OriginalName(%q) = %q, %v", got, orig, ok)
		}
		if !Managed(got, c.fake) {
			t.Errorf("%q is not managed (fake %v)", got, c.fake)
		}
	}
	for _, n := range []string{"user.georep.stat", "user.georep.other"} {
		if _, ok := OriginalName(n); ok || Managed(n, true) || Managed(n, false) {
			t.Errorf("%q taken for a stored attribute", n)
		}
	}
	if Managed("security.selinux", true) {
		t.Error("a fake-super secondary manages its real security.* attributes")
	}
}
