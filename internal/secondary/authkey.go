package secondary

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPublicKey reports a public key file that is not exactly one
// OpenSSH public key line.
var ErrBadPublicKey = errors.New("not a single OpenSSH public key line")

// AuthorizedKeyLine renders the authorized_keys entry that lets the key in
// pub run nothing but `georep secondary --root ROOT` (bin: the agent's
// path; root: absolute). pub must hold exactly one public key line ("type
// base64 [comment]"; blank and # lines aside): a second key would become an
// entry of its own, without the forced command, and options in the file
// would be copied in front of it, so both are refused. Paths are
// shell-quoted inside the command.
func AuthorizedKeyLine(pub []byte, bin, root string, fakeSuper bool) (string, error) {
	var keys []string
	for _, l := range strings.Split(string(pub), "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		keys = append(keys, l)
	}
	if len(keys) != 1 {
		return "", fmt.Errorf("%w: %d key lines", ErrBadPublicKey, len(keys))
	}
	key := keys[0]
	f := strings.Fields(key)
	if len(f) < 2 || !keyType(f[0]) {
		return "", fmt.Errorf("%w: it does not start with a key type (ssh-*, ecdsa-*, sk-*)", ErrBadPublicKey)
	}
	for _, c := range f[1] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return "", fmt.Errorf("%w: the key is not base64", ErrBadPublicKey)
		}
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%w: control character in the line", ErrBadPublicKey)
		}
	}
	cmd := shellQuote(bin) + " secondary --root " + shellQuote(root)
	if fakeSuper {
		cmd += " --fake-super"
	}
	return fmt.Sprintf("command=\"%s\",restrict %s", strings.ReplaceAll(cmd, `"`, `\"`), strings.Join(f, " ")), nil
}

func keyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-") || strings.HasPrefix(s, "sk-")
}

// shellQuote quotes s for a POSIX shell (sshd runs the forced command with
// the user's shell).
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
