package worker

import (
	"errors"
	"io/fs"
	"os"

	"github.com/georep/georep/internal/state"
)

// MetaOptions are the parts of the metadata a session carries. They are
// recorded beside the stime: a crawl only re-sends the metadata of files
// changed since the stime, so when a part is switched on (sync-xattrs or
// sync-acls back to true) the next crawl must re-send every file's.
type MetaOptions struct {
	Xattrs bool `json:"xattrs"`
	ACLs   bool `json:"acls"`
}

// MetaOptions returns what the config carries.
func (c Config) MetaOptions() MetaOptions {
	return MetaOptions{Xattrs: !c.NoXattrs, ACLs: !c.NoXattrs && !c.NoACLs}
}

// Widens reports whether o carries something prev did not.
func (o MetaOptions) Widens(prev MetaOptions) bool {
	return o.Xattrs && !prev.Xattrs || o.ACLs && !prev.ACLs
}

// MetaCrawlStime is the stime a crawl compares ctimes with: 0 (every
// file's metadata re-sent) when the options widened since the recorded
// ones (known says a record exists), else stime.
func MetaCrawlStime(stime int64, recorded MetaOptions, known bool, cur MetaOptions) int64 {
	if known && cur.Widens(recorded) {
		return 0
	}
	return stime
}

// ReadMetaOptions reads the options recorded at path; known is false when
// there is no record (a session older than the record: taken as the
// current options).
func ReadMetaOptions(path string) (o MetaOptions, known bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return MetaOptions{}, false, nil
	}
	if err = state.ReadJSON(path, &o); err != nil {
		return MetaOptions{}, false, err
	}
	return o, true, nil
}

// WriteMetaOptions records the options a completed sync carried.
func WriteMetaOptions(path string, o MetaOptions) error { return state.WriteJSON(path, o) }

// MetaOptionsFile is the record's name in a session's state directory.
const MetaOptionsFile = "meta-options.json"
