package session

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/worker"
)

func TestKeyParse(t *testing.T) {
	good := map[string][2]string{
		"sync-jobs=8":                        {"sync-jobs", "8"},
		"sync_jobs=auto":                     {"sync-jobs", "auto"},
		"batch-size=1000":                    {"batch-size", "1000"},
		"change-interval=500ms":              {"change-interval", "500ms"},
		"change-interval=5":                  {"change-interval", "5s"},
		"rollover-interval=2s":               {"rollover-interval", "2s"},
		"ignore-deletes=yes":                 {"ignore-deletes", "true"},
		"sync-xattrs=FALSE":                  {"sync-xattrs", "false"},
		"exclude= tmp , cache,":              {"exclude", "tmp,cache"},
		"exclude=":                           {"exclude", ""},
		"exclude=/cache/,*.tmp, logs/**/old": {"exclude", "/cache/,*.tmp,logs/**/old"},
		"exclude=sub/h3":                     {"exclude", "sub/h3"},
		"delete-excluded=yes":                {"delete-excluded", "true"},
		"compression=ZSTD":                   {"compression", "zstd"},
		"bandwidth-limit=10M":                {"bandwidth-limit", "10M"},
		"bandwidth-limit=1536K":              {"bandwidth-limit", "1536K"},
		"bandwidth-limit=1048576":            {"bandwidth-limit", "1M"},
		"bandwidth-limit=1.5MiB":             {"bandwidth-limit", "1536K"},
		"log-level=WARNING":                  {"log-level", "warn"},
		"log-format=json":                    {"log-format", "json"},
		"ssh-command=ssh -p 2222":            {"ssh-command", "ssh -p 2222"},
		"remote-georep=/opt/georep":          {"remote-georep", "/opt/georep"},
	}
	for in, want := range good {
		name, val, _ := strings.Cut(in, "=")
		k, err := LookupKey(name)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		got, err := k.Parse(val)
		if err != nil || k.Name != want[0] || got != want[1] {
			t.Errorf("%s: got %s=%q, %v; want %s=%q", in, k.Name, got, err, want[0], want[1])
		}
	}
	bad := []string{"sync-jobs=0x", "sync-jobs=65", "sync-jobs=-1", "batch-size=0", "change-interval=fast",
		"change-interval=1ms", "ignore-deletes=maybe", "exclude=/", "exclude=a,/", "delete-excluded=some", "compression=gzip",
		"bandwidth-limit=lots", "bandwidth-limit=-5", "log-level=trace", "log-format=xml", "ssh-command=a\nb"}
	for _, in := range bad {
		name, val, _ := strings.Cut(in, "=")
		k, err := LookupKey(name)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.Parse(val); err == nil {
			t.Errorf("%s accepted as %q", in, got)
		} else if !strings.Contains(err.Error(), "want ") {
			t.Errorf("%s: message %q does not say what is valid", in, err)
		}
	}
	_, err := LookupKey("no-such-key")
	if err == nil || !strings.Contains(err.Error(), "sync-jobs") || !strings.Contains(err.Error(), "bandwidth-limit") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	st := Store{Root: filepath.Join(t.TempDir(), "state")}
	s := &Session{Name: "backup", Primary: "/srv/data", Secondary: "dr@host:/srv/data"}
	if err := s.Set("exclude", "tmp,cache"); err != nil {
		t.Fatal(err)
	}
	s.Set("sync-jobs", "8")
	s.Set("ignore-deletes", "true")
	s.Set("bandwidth-limit", "10M")
	s.Set("change-interval", "1s") // the default: not stored
	if err := st.Create(s); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(&Session{Name: "backup", Primary: "/x", Secondary: "/y"}); err == nil {
		t.Error("a second session of the same name was created")
	}
	if err := st.Create(&Session{Name: "other", Primary: "/srv/data", Secondary: "dr@host:/srv/data"}); err == nil {
		t.Error("a second session for the same pair was created")
	}
	if err := st.Create(&Session{Name: "../x", Primary: "/a", Secondary: "/b"}); err == nil {
		t.Error("a bad name was accepted")
	}
	fi, err := os.Stat(st.Root)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(st.ConfigPath("backup"))
	text := string(b)
	for _, want := range []string{`state = "Created"`, `exclude = ["tmp", "cache"]`, `sync-jobs = 8`, `ignore-deletes = true`, `bandwidth-limit = "10M"`} {
		if !strings.Contains(text, want) {
			t.Errorf("config.toml lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "change-interval") || strings.Contains(text, "checkpoint =") {
		t.Errorf("config.toml holds defaults or an unset checkpoint:\n%s", text)
	}
	got, err := st.Load("backup")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Config, s.Config) || got.State != Created || got.Primary != s.Primary || got.Secondary != s.Secondary {
		t.Errorf("loaded %+v, saved %+v", got, s)
	}
	e, err := got.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if e.SyncJobs != 8 || !e.IgnoreDeletes || e.BandwidthLimit != 10<<20 || !reflect.DeepEqual(e.Exclude, []string{"tmp", "cache"}) ||
		e.ChangeInterval != time.Second || !e.SyncXattrs || e.Compression != "auto" || e.LogFormat != "text" {
		t.Errorf("effective %+v", e)
	}
	cp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := st.Update("backup", func(s *Session) error {
		s.State = Started
		s.Checkpoint = cp
		return s.Reset("exclude")
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Load("backup")
	if got.State != Started || !got.Checkpoint.Equal(cp) || got.Config["exclude"] != "" {
		t.Errorf("after update: %+v", got)
	}
	// Concurrent updates do not lose each other.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Update("backup", func(s *Session) error { return s.Set("batch-size", string(rune('1'+i))+"00") })
			st.Update("backup", func(s *Session) error {
				v, _, _ := s.Get("sync-jobs")
				n := 0
				for _, c := range v {
					n = n*10 + int(c-'0')
				}
				return s.Set("sync-jobs", string(rune('0'+(n+1)/10))+string(rune('0'+(n+1)%10)))
			})
		}()
	}
	wg.Wait()
	got, _ = st.Load("backup")
	if v, _, _ := got.Get("sync-jobs"); v != "16" {
		t.Errorf("8 concurrent increments of 8 gave %s", v)
	}
	list, err := st.List()
	if err != nil || len(list) != 1 || list[0].Name != "backup" || list[0].Err != nil {
		t.Errorf("list %+v %v", list, err)
	}
	// A hand-edited file is validated.
	os.WriteFile(st.ConfigPath("backup"), []byte("name = \"backup\"\nprimary = \"/a\"\nsecondary = \"/b\"\nstate = \"Started\"\n[config]\nsync-jobs = 100\n"), 0o600)
	if _, err := st.Load("backup"); err == nil || !strings.Contains(err.Error(), "sync-jobs") {
		t.Errorf("invalid hand-edited value: %v", err)
	}
	os.WriteFile(st.ConfigPath("backup"), []byte("name = \"backup\"\nprimary = \"/a\"\nsecondary = \"/b\"\nstate = \"Started\"\nbogus = 1\n"), 0o600)
	if _, err := st.Load("backup"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown entry: %v", err)
	}
	if err := st.Delete("backup"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.Dir("backup")); !os.IsNotExist(err) {
		t.Errorf("session dir left: %v", err)
	}
	if _, err := st.Load("backup"); err == nil {
		t.Error("deleted session loads")
	}
}

func TestParseCheckpoint(t *testing.T) {
	now := time.Now()
	if got, err := ParseCheckpoint("now", now); err != nil || !got.Equal(now) {
		t.Errorf("now: %v %v", got, err)
	}
	if got, err := ParseCheckpoint("2026-03-04T05:06:07Z", now); err != nil || !got.Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) {
		t.Errorf("rfc3339: %v %v", got, err)
	}
	if got, err := ParseCheckpoint("2026-03-04 05:06:07", now); err != nil || !got.Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)) {
		t.Errorf("local: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "2026-13-01 00:00:00", "12:00"} {
		if _, err := ParseCheckpoint(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// IgnoreDeletes on real plans: deletes vanish, renames and replacements
// stay.
func TestIgnoreDeletes(t *testing.T) {
	root := fileid.ID("00root")
	dirD := fileid.ID("0dirD")
	slot := func(p fileid.ID, n string) tree.Slot { return tree.Slot{Parent: p, Name: n} }
	file := func(id fileid.ID, s tree.Slot) *tree.Entry {
		return &tree.Entry{Slot: s, ID: id, Kind: tree.KindRegular, Nlink: 1}
	}
	dir := func(id fileid.ID, s tree.Slot) *tree.Entry {
		return &tree.Entry{Slot: s, ID: id, Kind: tree.KindDir, Nlink: 2}
	}
	mk := func(want, have []*tree.Entry, ids map[fileid.ID]plan.IDInfo, dirty ...tree.Slot) *worker.Job {
		in := plan.Input{Slots: dirty, Want: map[tree.Slot]*tree.Entry{}, Have: map[tree.Slot]*tree.Entry{}, IDs: ids}
		for _, e := range want {
			in.Want[e.Slot] = e
		}
		for _, e := range have {
			in.Have[e.Slot] = e
		}
		plan.SortSlots(in.Slots)
		return &worker.Job{Plan: plan.Make(in)}
	}
	kinds := func(j *worker.Job) string {
		var s []string
		for _, op := range j.Plan.Ops {
			s = append(s, op.Kind.String())
		}
		if len(j.Plan.NewFiles) > 0 {
			s = append(s, "NEWFILE")
		}
		return strings.Join(s, " ")
	}
	check := func(name string, j *worker.Job, before, after string) {
		t.Helper()
		if got := kinds(j); got != before {
			t.Errorf("%s: plan %q, want %q (test premise)", name, got, before)
		}
		IgnoreDeletes(j)
		if got := kinds(j); got != after {
			t.Errorf("%s: filtered %q, want %q", name, got, after)
		}
	}
	a, b := slot(root, "a"), slot(root, "b")
	fa := fileid.ID("0fileA")
	fn := fileid.ID("0fileN")
	// rm a
	check("unlink", mk(nil, []*tree.Entry{file(fa, a)}, map[fileid.ID]plan.IDInfo{fa: {Exists: true, Kind: tree.KindRegular, Links: 1}}, a),
		"UNLINK DROP", "")
	// mv a b
	check("rename", mk([]*tree.Entry{file(fa, b)}, []*tree.Entry{file(fa, a)}, map[fileid.ID]plan.IDInfo{fa: {Exists: true, Kind: tree.KindRegular, Links: 1}}, a, b),
		"STAGE MOVE", "STAGE MOVE")
	// rm a; create a (a new file takes the name)
	check("replace", mk([]*tree.Entry{file(fn, a)}, []*tree.Entry{file(fa, a)}, map[fileid.ID]plan.IDInfo{fa: {Exists: true, Kind: tree.KindRegular, Links: 1}}, a),
		"UNLINK DROP NEWFILE", "UNLINK DROP NEWFILE")
	// rm -r d (d/x inside)
	dx := slot(dirD, "x")
	fx := fileid.ID("0fileX")
	d := slot(root, "d")
	check("rmtree", mk(nil, []*tree.Entry{dir(dirD, d), file(fx, dx)},
		map[fileid.ID]plan.IDInfo{dirD: {Exists: true, Kind: tree.KindDir, Dir: d}, fx: {Exists: true, Kind: tree.KindRegular, Links: 1}}, d, dx),
		"STAGE UNLINK RMTREE DROP", "")
	// rm -r d; mkdir d (a new directory takes the name): the old one goes.
	dirN := fileid.ID("0dirN")
	check("replace dir", mk([]*tree.Entry{dir(dirN, d)}, []*tree.Entry{dir(dirD, d)},
		map[fileid.ID]plan.IDInfo{dirD: {Exists: true, Kind: tree.KindDir, Dir: d}}, d),
		"STAGE MKDIR RMTREE", "STAGE MKDIR RMTREE")
	// A stray on the secondary (an entry georep did not make) stays.
	check("stray", mk(nil, []*tree.Entry{{Slot: b, Kind: tree.KindSymlink}}, nil, b), "STAGE PURGE", "")
}
