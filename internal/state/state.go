// Package state owns georep's state directory on the primary: per-source
// records for one-shot syncs and per-session directories (config, stime,
// failures, status, changelogs), all written atomically.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Dir is a state directory.
type Dir string

// SyncDir is where `georep sync SRC DST` keeps its records for one pair.
func (d Dir) SyncDir(src, dst string) string {
	h := sha256.Sum256([]byte(src + "\x00" + dst))
	return filepath.Join(string(d), "sync", hex.EncodeToString(h[:8]))
}

// WriteFileAtomic writes path through a temp file, fsync and rename.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm, true)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode, durable bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

var errCorruptStime = errors.New("corrupt stime file")

// ReadStime reads an stime file (ns; 0 when missing).
func ReadStime(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %s: %v", errCorruptStime, path, err)
	}
	return v, nil
}

// WriteStime records an stime, durably (fsync).
func WriteStime(path string, ns int64) error {
	return WriteFileAtomic(path, []byte(strconv.FormatInt(ns, 10)+"\n"), 0o600)
}

// WriteStimeLazy records an stime atomically but without fsync, for a
// record whose loss only costs work: a one-shot sync's own copy, which
// resumes from the lower of it and the secondary's stime and crawls the
// whole tree anyway. An fsync here waits for a journal commit, and on a
// filesystem shared with the secondary that means its whole writeback.
// A crash may leave the previous value, or on some filesystems an empty
// file: ReadStimeLenient takes that as 0 (never synced).
func WriteStimeLazy(path string, ns int64) error {
	return writeFileAtomic(path, []byte(strconv.FormatInt(ns, 10)+"\n"), 0o600, false)
}

// ReadStimeLenient is ReadStime for records written by WriteStimeLazy: an
// unparsable record reads as 0 (start over), reported by corrupt.
func ReadStimeLenient(path string) (ns int64, corrupt bool, err error) {
	ns, err = ReadStime(path)
	if err != nil && errors.Is(err, errCorruptStime) {
		return 0, true, nil
	}
	return ns, false, err
}

// WriteJSON writes v as indented JSON, atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// ReadJSON reads JSON into v; a missing file leaves v alone.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
