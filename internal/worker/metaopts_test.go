package worker

import (
	"path/filepath"
	"testing"
)

func TestMetaCrawlStime(t *testing.T) {
	all, noX, noACL := MetaOptions{Xattrs: true, ACLs: true}, MetaOptions{}, MetaOptions{Xattrs: true}
	cases := []struct {
		rec   MetaOptions
		known bool
		cur   MetaOptions
		want  int64
	}{
		{all, true, all, 42},
		{noX, true, all, 0},    // sync-xattrs back to true: every file's metadata again
		{noACL, true, all, 0},  // sync-acls back to true
		{all, true, noACL, 42}, // narrowed: nothing to re-send
		{noX, false, all, 42},  // no record: taken as the current options
		{noACL, true, noACL, 42},
	}
	for _, c := range cases {
		if got := MetaCrawlStime(42, c.rec, c.known, c.cur); got != c.want {
			t.Errorf("MetaCrawlStime(42, %+v, %v, %+v) = %d, want %d", c.rec, c.known, c.cur, got, c.want)
		}
	}
	if (Config{NoXattrs: true}).MetaOptions() != noX || (Config{NoACLs: true}).MetaOptions() != noACL {
		t.Error("Config.MetaOptions")
	}
}

func TestMetaOptionsRecord(t *testing.T) {
	p := filepath.Join(t.TempDir(), MetaOptionsFile)
	if _, known, err := ReadMetaOptions(p); known || err != nil {
		t.Fatalf("no record: known %v, %v", known, err)
	}
	if err := WriteMetaOptions(p, MetaOptions{Xattrs: true}); err != nil {
		t.Fatal(err)
	}
	if o, known, err := ReadMetaOptions(p); !known || err != nil || o != (MetaOptions{Xattrs: true}) {
		t.Fatalf("%+v %v %v", o, known, err)
	}
}
