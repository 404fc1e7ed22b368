package service

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/state"
)

// Position is a consumer's place in its root's changelogs: every changelog
// up to Seq of the changelog dir identified by Root has been applied.
type Position struct {
	Root string `json:"root"`
	Seq  uint64 `json:"seq"`
}

const (
	consumersDir = "consumers"
	rootIDFile   = "root.id"
)

// ReadPosition reads session's position in the changelog dir; ok is false
// when it has none.
func ReadPosition(dir, session string) (p Position, ok bool, err error) {
	if err := validSession(session); err != nil {
		return Position{}, false, err
	}
	b, err := os.ReadFile(filepath.Join(dir, consumersDir, session))
	if errors.Is(err, fs.ErrNotExist) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("journal position: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Position{}, false, fmt.Errorf("journal position %s: %w", filepath.Join(dir, consumersDir, session), err)
	}
	return p, true, nil
}

// WritePosition records session's position (atomically and durably).
func WritePosition(dir, session string, p Position) error {
	if err := validSession(session); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, consumersDir), 0o700); err != nil {
		return fmt.Errorf("journal position: %w", err)
	}
	b, _ := json.Marshal(p)
	if err := state.WriteFileAtomic(filepath.Join(dir, consumersDir, session), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal position: %w", err)
	}
	return nil
}

// RootID reads the changelog dir's identity (made with the dir).
func RootID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, rootIDFile))
	if err != nil {
		return "", fmt.Errorf("journal root id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ensureRootID gives a changelog dir its identity if it has none.
func ensureRootID(dir string) (string, error) {
	if id, err := RootID(dir); err == nil && id != "" {
		return id, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := state.WriteFileAtomic(filepath.Join(dir, rootIDFile), []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// Consumer-side gaps: what Select found missing.
const (
	// GapNoPosition: the consumer has no position in this changelog dir
	// (first use, or the dir was made anew).
	GapNoPosition = "no journal position"
	// GapDropped: changelogs after the position are gone (the size limit).
	GapDropped = "changelogs dropped (size limit)"
)

// Selection is what a consumer takes next.
type Selection struct {
	// Take are the changelogs to apply, in order (possibly none).
	Take []changelog.FileInfo
	// Gap, when not empty, says the changelogs cannot account for
	// everything since the position: crawl (since the stime) with them.
	Gap string
	// Through is the position to record once Take (and the crawl, if
	// Gap) are applied.
	Through uint64
}

// Select decides what a consumer at pos (ok: it has one) applies next from
// a changelog dir with identity rootID, whose journal.state st was read
// before files were listed. Changelogs up to the position are skipped (the
// journal deletes them lazily); a position of another dir, or changelogs
// missing after it, make a gap.
func Select(pos Position, ok bool, rootID string, st journal.State, files []changelog.FileInfo) Selection {
	var sel Selection
	if !ok || pos.Root != rootID {
		sel.Gap = GapNoPosition
		sel.Take = files
		sel.Through = st.LastSeq
		if n := len(files); n > 0 {
			sel.Through = max(sel.Through, files[n-1].Seq)
		}
		return sel
	}
	sel.Through = pos.Seq
	i := 0
	for i < len(files) && files[i].Seq <= pos.Seq {
		i++
	}
	rest := files[i:]
	switch {
	case len(rest) == 0:
		if st.LastSeq > pos.Seq {
			// Written after the position and already gone.
			sel.Gap, sel.Through = GapDropped, st.LastSeq
		}
	case rest[0].Seq > pos.Seq+1:
		sel.Gap = GapDropped
	}
	sel.Take = rest
	if n := len(rest); n > 0 {
		sel.Through = rest[n-1].Seq
	}
	return sel
}

// Dir returns the changelog dir of a root under a journal dir.
func Dir(journalDir, canonicalRoot string) string {
	return filepath.Join(journalDir, "roots", rootKey(canonicalRoot))
}
