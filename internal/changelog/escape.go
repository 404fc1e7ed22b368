package changelog

import (
	"errors"
	"strings"
)

// escapeTable marks the bytes that are written as %XX: controls, space,
// DEL and above, and '%' itself.
var escapeTable = func() (t [256]bool) {
	for i := range t {
		c := byte(i)
		t[i] = c <= 0x20 || c >= 0x7f || c == '%'
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// emptyField is how an empty string is written; a string that is exactly "-"
// is written as escapedDash so the two stay distinct.
const (
	emptyField  = "-"
	escapedDash = "%2D"
)

// EscapeName encodes an arbitrary byte string as one non-empty field of
// printable ASCII without spaces: every byte <= 0x20, >= 0x7f or '%' becomes
// %XX (upper-case hex). The empty string is written as "-" and the string "-"
// as "%2D", so every string has exactly one encoding and UnescapeName
// inverts it.
func EscapeName(s string) string {
	switch s {
	case "":
		return emptyField
	case "-":
		return escapedDash
	}
	for i := 0; i < len(s); i++ {
		if escapeTable[s[i]] {
			return string(appendEscaped(make([]byte, 0, len(s)+16), s))
		}
	}
	return s
}

// appendEscaped appends EscapeName(s) to b.
func appendEscaped(b []byte, s string) []byte {
	switch s {
	case "":
		return append(b, emptyField...)
	case "-":
		return append(b, escapedDash...)
	}
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapeTable[c] {
			b = append(b, s[start:i]...)
			b = append(b, '%', upperHex[c>>4], upperHex[c&0xf])
			start = i + 1
		}
	}
	return append(b, s[start:]...)
}

// UnescapeName inverts EscapeName. It accepts only the canonical encoding:
// a non-empty field of bytes 0x21..0x7e, escapes of exactly two upper-case
// hex digits, and only for bytes that EscapeName escapes ("-" means the empty
// string; "%2D" is allowed only as the whole field "-"). When nothing is
// escaped the result shares s's memory.
func UnescapeName(s string) (string, error) {
	switch s {
	case "":
		return "", errors.New("empty field")
	case emptyField:
		return "", nil
	case escapedDash:
		return "-", nil
	}
	// Fast path: nothing escaped.
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			break
		}
		if escapeTable[c] {
			return "", errUnescaped
		}
	}
	if i == len(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if escapeTable[c] {
				return "", errUnescaped
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated %-escape")
		}
		hi, ok1 := unhexUpper(s[i+1])
		lo, ok2 := unhexUpper(s[i+2])
		if !ok1 || !ok2 {
			return "", errors.New("bad %-escape (want two upper-case hex digits)")
		}
		d := hi<<4 | lo
		if !escapeTable[d] {
			return "", errors.New("non-canonical %-escape of a printable byte")
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}

var errUnescaped = errors.New("unescaped control, space or non-ASCII byte")

func unhexUpper(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
