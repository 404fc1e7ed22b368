package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the name of the per-root state file in the changelog dir.
const stateFile = "journal.state"

// state is the content of journal.state.
type state struct {
	Version int `json:"version"`
	// LastSeq is the sequence number of the last changelog written (the
	// worker may have deleted it since).
	LastSeq uint64 `json:"last_seq"`
	// End is the vouched time (ns since the epoch): every filesystem event
	// before it is in a durable changelog of this root, or did not concern
	// the root. It is the end of the last changelog at the latest, and the
	// time of a clean stop.
	End int64 `json:"end"`
	// Clean is true when the journal stopped cleanly.
	Clean bool `json:"clean"`
	// Updated is when the file was written (ns), for humans.
	Updated int64 `json:"updated"`
	// Since is when the journal's unbroken coverage of this root began (ns):
	// the end of the last gap it recorded (a start after downtime, a queue
	// overflow). A hand-off to a successor keeps it.
	Since int64 `json:"covered_since,omitempty"`
}

// State is what a changelog dir's journal.state says, for the readers of the
// changelogs (workers in other processes): LastSeq, End (every event before
// it that concerns the root is in a durable changelog), Since (unbroken
// coverage since) and whether the journal stopped cleanly.
type State = state

// ReadState reads the journal.state of a changelog dir; ok is false when
// there is none (no journal ever wrote there).
func ReadState(dir string) (st State, ok bool, err error) { return readState(dir) }

const stateVersion = 1

// readState reads dir's state file; ok is false when there is none.
func readState(dir string) (st state, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return state{}, false, nil
		}
		return state{}, false, fmt.Errorf("read journal state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, false, fmt.Errorf("read journal state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Version != stateVersion {
		return state{}, false, fmt.Errorf("read journal state %s: version %d, want %d", filepath.Join(dir, stateFile), st.Version, stateVersion)
	}
	return st, true, nil
}

// writeState replaces dir's state file atomically and durably.
func writeState(dir string, st state) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(dir, stateFile)
	f, err := os.CreateTemp(dir, "."+stateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write journal state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write journal state %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write journal state: %w", err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("write journal state: fsync %s: %w", dir, err)
	}
	return nil
}
