package verify

import (
	"testing"

	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

func TestEncodeFakeStat(t *testing.T) {
	for _, c := range []struct {
		kind     tree.Kind
		mode     uint32
		rdev     uint64
		uid, gid uint32
		want     string
	}{
		{tree.KindRegular, 0644, 0, 1000, 1000, "100644 0,0 1000:1000"},
		{tree.KindChar, 0644, unix.Mkdev(1, 3), 0, 0, "20644 1,3 0:0"},
		{tree.KindFIFO, 0644, 0, 0, 0, "10644 0,0 0:0"},
		{tree.KindDir, 01777, 0, 0, 0, "41777 0,0 0:0"},
		{tree.KindBlock, 0660, unix.Mkdev(259, 1048575), 0, 6, "60660 259,1048575 0:6"},
		{tree.KindSocket, 0755, 0, 4294967295, 7, "140755 0,0 4294967295:7"},
		{tree.KindSymlink, 0777, 0, 1, 2, "120777 0,0 1:2"},
		{tree.KindRegular, 0104755 /* type bits ignored */, 0, 0, 0, "104755 0,0 0:0"},
	} {
		got := EncodeFakeStat(c.kind, c.mode, c.rdev, c.uid, c.gid)
		if got != c.want {
			t.Errorf("EncodeFakeStat(%v, %o, %d, %d, %d) = %q, want %q", c.kind, c.mode, c.rdev, c.uid, c.gid, got, c.want)
		}
		k, m, r, u, g, err := DecodeFakeStat(got)
		if err != nil || k != c.kind || m != c.mode&07777 || r != c.rdev || u != c.uid || g != c.gid {
			t.Errorf("DecodeFakeStat(%q) = %v %o %d %d %d %v", got, k, m, r, u, g, err)
		}
	}
}

func TestFakeStatRoundTrip(t *testing.T) {
	kinds := []tree.Kind{tree.KindRegular, tree.KindDir, tree.KindSymlink, tree.KindFIFO, tree.KindChar, tree.KindBlock, tree.KindSocket}
	rdevs := []uint64{0, unix.Mkdev(1, 3), unix.Mkdev(8, 17), unix.Mkdev(0xffffffff, 0xffffffff), 1<<64 - 1, 0x123456789abcdef0}
	modes := []uint32{0, 0644, 07777, 04755, 0600}
	ids := []uint32{0, 1, 1234, 65534, 1<<32 - 1}
	for _, k := range kinds {
		for _, r := range rdevs {
			for _, m := range modes {
				for _, id := range ids {
					s := EncodeFakeStat(k, m, r, id, ^id)
					k2, m2, r2, u2, g2, err := DecodeFakeStat(s)
					if err != nil || k2 != k || m2 != m || r2 != r || u2 != id || g2 != ^id {
						t.Fatalf("round trip of %v %o %x %d: %q -> %v %o %x %d %d %v", k, m, r, id, s, k2, m2, r2, u2, g2, err)
					}
				}
			}
		}
	}
	// rsync stores the value with its terminating NUL.
	if k, m, _, u, g, err := DecodeFakeStat("100600 0,0 5:6\x00"); err != nil || k != tree.KindRegular || m != 0600 || u != 5 || g != 6 {
		t.Errorf("NUL-terminated value: %v %o %d %d %v", k, m, u, g, err)
	}
	// Leading zeros are tolerated.
	if k, m, _, _, _, err := DecodeFakeStat("0100600 00,0 05:6"); err != nil || k != tree.KindRegular || m != 0600 {
		t.Errorf("leading zeros: %v %o %v", k, m, err)
	}
}

func TestDecodeFakeStatRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"100644",
		"100644 0,0",
		"100644 0,0 0",
		"100644 0 0:0",
		"100644 0,0 0:0 extra",
		"100644  0,0 0:0",
		" 100644 0,0 0:0",
		"100644 0,0 0:0 ",
		"100644 0,0 0:0\n",
		"100644 0,0 0:0\x00\x00",
		"644 0,0 0:0",             // no file type
		"170644 0,0 0:0",          // unknown file type
		"300644 0,0 0:0",          // bits beyond S_IFMT
		"100648 0,0 0:0",          // not octal
		"-100644 0,0 0:0",         // sign
		"+100644 0,0 0:0",         // sign
		"0x81a4 0,0 0:0",          // prefix
		"100644 a,0 0:0",          // not decimal
		"100644 0,-1 0:0",         // negative
		"100644 0,0 -1:0",         // negative
		"100644 0,0 0:4294967296", // overflows 32 bits
		"100644 4294967296,0 0:0",
		"100644 0,0 1_000:0",
		"100644 0,0,0 0:0",
		"100644 0,0 0:0:0",
		"100644 ,0 0:0",
		"100644 0, 0:0",
		"100644 0,0 :0",
		"100644 0,0 0:",
		"10000000000000000000000644 0,0 0:0",
	} {
		if k, m, r, u, g, err := DecodeFakeStat(s); err == nil {
			t.Errorf("DecodeFakeStat(%q) = %v %o %d %d %d, want an error", s, k, m, r, u, g)
		}
	}
}

func FuzzDecodeFakeStat(f *testing.F) {
	for _, s := range []string{"100644 0,0 1000:1000", "20644 1,3 0:0", "10644 0,0 0:0", "41777 0,0 0:0\x00", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, m, r, u, g, err := DecodeFakeStat(s)
		if err != nil {
			return
		}
		if k == tree.KindNone || m&^07777 != 0 {
			t.Fatalf("DecodeFakeStat(%q) accepted kind %v mode %o", s, k, m)
		}
		enc := EncodeFakeStat(k, m, r, u, g)
		k2, m2, r2, u2, g2, err := DecodeFakeStat(enc)
		if err != nil || k2 != k || m2 != m || r2 != r || u2 != u || g2 != g {
			t.Fatalf("%q decoded to %v %o %d %d:%d, re-encoded as %q which decodes to %v %o %d %d:%d (%v)",
				s, k, m, r, u, g, enc, k2, m2, r2, u2, g2, err)
		}
		if len(enc) > len(s) {
			t.Fatalf("canonical form %q longer than accepted input %q", enc, s)
		}
	})
}
