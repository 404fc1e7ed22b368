package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/internal/secondary"
)

// The printed authorized_keys entry must be one line with the forced
// command: a .pub file (it comes from the primary's side) with a second
// line would make a second, unrestricted entry, so it is refused and
// nothing is printed.
func TestAttackAuthorizedKeyOneLine(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		pub  string
		want error
	}{
		"one key":          {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGood primary\n", nil},
		"two keys":         {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGood primary\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil second key\n", secondary.ErrBadPublicKey},
		"options in front": {`command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGood` + "\n", secondary.ErrBadPublicKey},
		"empty":            {"\n\n", secondary.ErrBadPublicKey},
		"carriage return":  {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGood a\rb\n", secondary.ErrBadPublicKey},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			pub := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".pub")
			if err := os.WriteFile(pub, []byte(c.pub), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := captureStdout(t, func() error { return printAuthorizedKey(pub, "/srv/it's a replica", false) })
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if c.want != nil {
				if out != "" {
					t.Errorf("refused, yet printed %q", out)
				}
				return
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], `command="'`) {
				t.Fatalf("want one line with a quoted forced command, got %q", out)
			}
			if !strings.Contains(lines[0], ` secondary --root '/srv/it'\''s a replica'",restrict ssh-ed25519 `) {
				t.Errorf("root not shell-quoted: %q", lines[0])
			}
		})
	}
}

func captureStdout(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	ferr := fn()
	os.Stdout = old
	w.Close()
	b := make([]byte, 1<<16)
	n, _ := r.Read(b)
	r.Close()
	return string(b[:max(n, 0)]), ferr
}
