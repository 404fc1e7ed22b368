package verify

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// FakeStatXattr is the xattr in which a replica that cannot chown or mknod
// (a non-root secondary) keeps a file's real type, permission bits, device
// number and owner. Its value has the format of rsync's --fake-super
// user.rsync.%stat; see EncodeFakeStat.
const FakeStatXattr = "user.georep.stat"

// PrivateXattrPrefix starts the names of georep's own xattrs. They are never
// compared, on either side.
const PrivateXattrPrefix = "user.georep."

// EncodeFakeStat formats the value of FakeStatXattr exactly like rsync's
// --fake-super: "%o %d,%d %d:%d", that is the mode in octal including the
// S_IFMT file-type bits, the device number as major,minor, and uid:gid.
// For example "100644 0,0 1000:1000" for a regular file, "20644 1,3 0:0" for
// the character device 1,3. Only the 07777 bits of mode are used. kind must not
// be tree.KindNone (DecodeFakeStat rejects what it would produce).
func EncodeFakeStat(kind tree.Kind, mode uint32, rdev uint64, uid, gid uint32) string {
	b := make([]byte, 0, 32)
	b = strconv.AppendUint(b, uint64(kind.IFMT()|mode&07777), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(unix.Major(rdev)), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(unix.Minor(rdev)), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(uid), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(gid), 10)
	return string(b)
}

var errFakeStat = errors.New("malformed fake-super stat")

// DecodeFakeStat parses a value written by EncodeFakeStat (or by rsync
// --fake-super, which appends a NUL: one trailing NUL is accepted). It returns
// the kind, the 07777 permission bits, the device number, uid and gid. It is
// strict: exactly three space-separated fields, digits only (leading zeros
// allowed), a known file type, no bits outside S_IFMT|07777, and every number
// within 32 bits.
func DecodeFakeStat(s string) (kind tree.Kind, mode uint32, rdev uint64, uid, gid uint32, err error) {
	orig := s
	s = strings.TrimSuffix(s, "\x00")
	fail := func(why string) (tree.Kind, uint32, uint64, uint32, uint32, error) {
		return tree.KindNone, 0, 0, 0, 0, fmt.Errorf("%w %q: %s", errFakeStat, orig, why)
	}
	modeStr, rest, ok := strings.Cut(s, " ")
	if !ok {
		return fail("want three fields")
	}
	devStr, owner, ok := strings.Cut(rest, " ")
	if !ok {
		return fail("want three fields")
	}
	majStr, minStr, ok := strings.Cut(devStr, ",")
	if !ok {
		return fail("device is not major,minor")
	}
	uidStr, gidStr, ok := strings.Cut(owner, ":")
	if !ok {
		return fail("owner is not uid:gid")
	}
	m, ok := parseDigits(modeStr, 8)
	if !ok {
		return fail("bad mode")
	}
	if m&^uint64(unix.S_IFMT|07777) != 0 {
		return fail("mode has unknown bits")
	}
	kind = tree.KindOf(uint32(m))
	if kind == tree.KindNone {
		return fail("unknown file type")
	}
	maj, ok1 := parseDigits(majStr, 10)
	mnr, ok2 := parseDigits(minStr, 10)
	u, ok3 := parseDigits(uidStr, 10)
	g, ok4 := parseDigits(gidStr, 10)
	if !ok1 || !ok2 {
		return fail("bad device number")
	}
	if !ok3 || !ok4 {
		return fail("bad uid or gid")
	}
	return kind, uint32(m) & 07777, unix.Mkdev(uint32(maj), uint32(mnr)), uint32(u), uint32(g), nil
}

// parseDigits parses a non-empty string of digits in base 8 or 10 that fits in
// 32 bits. Unlike strconv it accepts no sign, underscore or prefix.
func parseDigits(s string, base uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := uint64(s[i]) - '0'
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 1<<32-1 {
			return 0, false
		}
	}
	return v, true
}
