package secondary

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sys/unix"
)

// TestCheckRoot: what a hello checks before it writes anything.
func TestCheckRoot(t *testing.T) {
	ours, other := fakeID(1), fakeID(2)
	for _, c := range []struct {
		name            string
		rootID          string // .georep/root, "" for none
		promoted, force bool
		wantForeign     bool
		wantErr         error
	}{
		{name: "new root"},
		{name: "ours", rootID: string(ours)},
		{name: "another primary's", rootID: string(other), wantForeign: true, wantErr: protocol.ErrForeign},
		{name: "another primary's, forced", rootID: string(other), force: true, wantForeign: true},
		{name: "promoted", rootID: string(ours), promoted: true, wantErr: protocol.ErrFenced},
		{name: "promoted, forced", rootID: string(other), promoted: true, force: true, wantErr: protocol.ErrFenced},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if c.rootID != "" {
				os.MkdirAll(filepath.Join(root, ".georep"), 0o700)
				os.WriteFile(filepath.Join(root, rootIDFile), []byte(c.rootID+"\n"), 0o600)
			}
			if c.promoted {
				if _, err := Promote(root, time.Second); err != nil {
					t.Fatal(err)
				}
			}
			fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			foreign, err := checkRoot(fd, root, ours, c.force)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				if errors.Is(err, protocol.ErrFenced) && !strings.Contains(err.Error(), "georep demote "+root) {
					t.Errorf("the refusal does not say how to undo it: %v", err)
				}
				return
			}
			if err != nil || foreign != c.wantForeign {
				t.Fatalf("foreign %v, err %v; want foreign %v", foreign, err, c.wantForeign)
			}
		})
	}
}

// TestPromoteDemote: promote fences (twice is an error), demote lifts the
// fence and forgets the stime, and demoting what is not promoted is an
// error.
func TestPromoteDemote(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, ".georep"), 0o700)
	os.WriteFile(filepath.Join(root, stimeFile), []byte("42\n"), 0o600)
	if err := Demote(root, time.Second); err == nil {
		t.Error("demoted a root that was not promoted")
	}
	p, err := Promote(root, time.Second)
	if err != nil || p.Root != root || p.Time.IsZero() {
		t.Fatalf("promote: %+v, %v", p, err)
	}
	if _, err := Promote(root, time.Second); err == nil {
		t.Error("promoted twice")
	}
	if got, fenced, err := RootRole(root); err != nil || !fenced || got.Root != root {
		t.Errorf("role after promote: %+v %v %v", got, fenced, err)
	}
	if err := Demote(root, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, fenced, _ := RootRole(root); fenced {
		t.Error("still fenced after demote")
	}
	if _, err := os.Stat(filepath.Join(root, stimeFile)); !os.IsNotExist(err) {
		t.Errorf("the stime survived demote: %v", err)
	}
}
