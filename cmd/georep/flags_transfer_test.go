package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/georep/georep/internal/cli"
)

// parseTransfer parses args as sync does (flags anywhere, the old
// --compress form rewritten) and returns the positionals and the setting.
func parseTransfer(args []string) (pos []string, comp string, bw int64, note string, err error) {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	var f syncFlags
	f.register(fs)
	var tf transferFlags
	tf.register(fs)
	if pos, err = cli.Parse(fs, tf.oldForm(args)); err != nil {
		return nil, "", 0, "", err
	}
	comp, bw, err = tf.setting()
	return pos, comp, bw, tf.note(), err
}

func TestTransferFlags(t *testing.T) {
	// Run where no file is named like a compression value.
	t.Chdir(t.TempDir())
	for _, c := range []struct {
		args    []string
		pos     []string
		comp    string
		bw      int64
		note    bool
		wantErr string
	}{
		{args: []string{"SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "auto"},
		// -z is a switch and does not swallow SRC.
		{args: []string{"-z", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd"},
		{args: []string{"--compress", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd"},
		{args: []string{"SRC", "--compress", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd"},
		{args: []string{"SRC", "DST", "-z"}, pos: []string{"SRC", "DST"}, comp: "zstd"},
		{args: []string{"--compress=false", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "none"},
		{args: []string{"--no-compress", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "none"},
		// rsync 3.2's names.
		{args: []string{"--compress-choice", "zstd", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd"},
		{args: []string{"--compress-choice=none", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "none"},
		{args: []string{"--compress-level", "3", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd:2"},
		{args: []string{"-z", "--compress-level=1", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd:1"},
		{args: []string{"--compress-level", "7", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd:3"},
		{args: []string{"--compress-level", "19", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd:4"},
		{args: []string{"--compress-level", "0", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "none"},
		{args: []string{"--compress-level", "23", "SRC", "DST"}, wantErr: "0 to 22"},
		{args: []string{"--compress-level", "-1", "SRC", "DST"}, wantErr: "0 to 22"},
		{args: []string{"--compress-level", "x", "SRC", "DST"}, wantErr: "want a number"},
		{args: []string{"--compress-choice", "lz4", "SRC", "DST"}, wantErr: "zstd only"},
		{args: []string{"--compress-choice", "none", "-z", "SRC", "DST"}, wantErr: "contradicts"},
		{args: []string{"--compress-choice", "none", "--compress-level", "3", "SRC", "DST"}, wantErr: "contradicts"},
		{args: []string{"--no-compress", "-z", "SRC", "DST"}, wantErr: "contradict"},
		// The old value form keeps working, with a note naming the new flags.
		{args: []string{"--compress", "zstd", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd", note: true},
		{args: []string{"--compress=zstd:4", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "zstd:4", note: true},
		{args: []string{"SRC", "DST", "--compress", "none"}, pos: []string{"SRC", "DST"}, comp: "none", note: true},
		{args: []string{"--compress=gzip", "SRC", "DST"}, wantErr: "--compress-level"},
		// Bandwidth: --bandwidth-limit in bytes, --bwlimit in KiB as rsync.
		{args: []string{"--bandwidth-limit", "20M", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "auto", bw: 20 << 20},
		{args: []string{"--bandwidth-limit", "5000", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "auto", bw: 5000},
		{args: []string{"--bwlimit", "1000", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "auto", bw: 1000 << 10},
		{args: []string{"--bwlimit=2M", "SRC", "DST"}, pos: []string{"SRC", "DST"}, comp: "auto", bw: 2 << 20},
		{args: []string{"--bwlimit", "fast", "SRC", "DST"}, wantErr: "bwlimit"},
	} {
		pos, comp, bw, note, err := parseTransfer(c.args)
		name := strings.Join(c.args, " ")
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err %v, want one saying %q", name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(pos, c.pos) || comp != c.comp || bw != c.bw || (note != "") != c.note {
			t.Errorf("%s: pos %q comp %q bw %d note %q; want pos %q comp %q bw %d note %v", name, pos, comp, bw, note, c.pos, c.comp, c.bw, c.note)
		}
		if c.note && !strings.Contains(note, "--compress-level") {
			t.Errorf("%s: note %q does not name the new flags", name, note)
		}
	}
}

// A directory named like an old compression value is SRC, not a value.
func TestTransferFlagsOldFormYieldsToPaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir(filepath.Join(dir, "zstd"), 0o755); err != nil {
		t.Fatal(err)
	}
	pos, comp, _, _, err := parseTransfer([]string{"--compress", "zstd", "DST"})
	if err != nil || !slices.Equal(pos, []string{"zstd", "DST"}) || comp != "zstd" {
		t.Errorf("pos %q comp %q err %v; want the directory zstd as SRC and -z on", pos, comp, err)
	}
}
