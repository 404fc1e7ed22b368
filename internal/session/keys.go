package session

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/georep/georep/internal/filter"
)

// Kind is the type of a config key's value.
type Kind string

// Value kinds.
const (
	KindInt      Kind = "int"
	KindDuration Kind = "duration"
	KindBool     Kind = "bool"
	KindString   Kind = "string"
	KindChoice   Kind = "choice"
	KindList     Kind = "list"
	KindSize     Kind = "size"
)

// Key describes one session config key. Values are held in a canonical
// text form (Parse produces it); a list is comma-separated.
type Key struct {
	Name    string
	Kind    Kind
	Default string
	Help    string
	// Min and Max bound an int or a duration (ns) when Max > 0.
	Min, Max int64
	// Choices are the allowed values of a choice.
	Choices []string
	// Auto is an int key whose "auto" (stored as 0) means "fitted to the
	// machine".
	Auto bool
	// Live keys change a running worker without restarting it.
	Live bool
}

// Keys are the session config keys, by name.
var Keys = map[string]*Key{}

func init() {
	for _, k := range []*Key{
		{Name: "sync-jobs", Kind: KindInt, Default: "auto", Min: 1, Max: 64, Auto: true,
			Help: "files transferred in parallel (1..64; auto = max(4, 2×CPUs))"},
		{Name: "batch-size", Kind: KindInt, Default: "50000", Min: 1, Max: 10_000_000,
			Help: "most changelog records applied in one batch (the unit of stime advance)"},
		{Name: "change-interval", Kind: KindDuration, Default: "1s", Min: int64(10 * time.Millisecond), Max: int64(time.Hour),
			Help: "longest the worker waits before looking for new changelogs when not notified"},
		{Name: "rollover-interval", Kind: KindDuration, Default: "1s", Min: int64(10 * time.Millisecond), Max: int64(time.Hour),
			Help: "longest a changelog stays open before it is closed and can be applied"},
		{Name: "crawl-interval", Kind: KindDuration, Default: "10s", Min: int64(time.Second), Max: int64(24 * time.Hour),
			Help: "period of full crawls when the change journal is unavailable"},
		{Name: "ignore-deletes", Kind: KindBool, Default: "false",
			Help: "never remove on the secondary what was deleted on the primary (a name the primary reuses is still replaced)"},
		{Name: "sync-xattrs", Kind: KindBool, Default: "true",
			Help: "replicate extended attributes (user.*, security.*, trusted.* as root) and POSIX ACLs"},
		{Name: "sync-acls", Kind: KindBool, Default: "true",
			Help: "replicate POSIX ACLs (system.posix_acl_*); false leaves the secondary's files without ACLs (sync-xattrs false stops both)"},
		{Name: "fake-super", Kind: KindBool, Default: "false",
			Help: "keep owners, groups and device numbers in user.georep.stat xattrs on the secondary (automatic when it is not root)"},
		{Name: "exclude", Kind: KindList, Default: "",
			Help: "rsync exclude patterns, comma-separated (e.g. \"/cache/,*.tmp,logs/**/old\"): a leading / anchors at the root, a trailing / matches directories only, * ? [...] within a name, ** across names; what they match is not replicated and is kept on the secondary"},
		{Name: "delete-excluded", Kind: KindBool, Default: "false",
			Help: "remove from the secondary what the exclude patterns match (rsync --delete-excluded)"},
		{Name: "compression", Kind: KindChoice, Default: "auto", Choices: []string{"auto", "none", "zstd", "zstd:1", "zstd:2", "zstd:3", "zstd:4"},
			Help: "compression of file data on the wire: auto (when the link is slower than the compressor, at the level that moves most; never over loopback or for incompressible data), none, zstd (always, level chosen by the link), zstd:1..4 (fixed: fastest, default, better, best)"},
		{Name: "bandwidth-limit", Kind: KindSize, Default: "0",
			Help: "most bytes per second written to the secondary, with K/M/G suffixes (binary: 1K = 1024); 0 = no limit"},
		{Name: "ssh-command", Kind: KindString, Default: "",
			Help: "ssh command for a remote secondary, e.g. \"ssh -p 2222 -i /root/.ssh/georep\" (empty = ssh)"},
		{Name: "remote-georep", Kind: KindString, Default: "",
			Help: "georep command on the secondary host (empty = georep)"},
		{Name: "log-level", Kind: KindChoice, Default: "info", Choices: []string{"debug", "info", "warn", "error"}, Live: true,
			Help: "level of the session's log (georep.log in its directory); changes without a restart"},
		{Name: "log-format", Kind: KindChoice, Default: "text", Choices: []string{"text", "json"},
			Help: "format of the session's log"},
	} {
		Keys[k.Name] = k
	}
}

// KeyNames lists the config keys, sorted.
func KeyNames() []string {
	names := make([]string, 0, len(Keys))
	for n := range Keys {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupKey finds a key; "_" may stand for "-". An unknown key is an error
// listing the valid ones.
func LookupKey(name string) (*Key, error) {
	if k, ok := Keys[strings.ReplaceAll(strings.ToLower(name), "_", "-")]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown config key %q; valid keys: %s", name, strings.Join(KeyNames(), ", "))
}

// Allowed describes the values a key accepts, for messages and help.
func (k *Key) Allowed() string {
	switch k.Kind {
	case KindInt:
		s := fmt.Sprintf("an integer %d..%d", k.Min, k.Max)
		if k.Auto {
			s += " or auto"
		}
		return s
	case KindDuration:
		return fmt.Sprintf("a duration %s..%s (e.g. 500ms, 2s, 1m)", time.Duration(k.Min), time.Duration(k.Max))
	case KindBool:
		return "true or false"
	case KindChoice:
		return "one of " + strings.Join(k.Choices, ", ")
	case KindList:
		return "a comma-separated list of rsync exclude patterns (empty for none)"
	case KindSize:
		return "bytes per second: a number with an optional K, M, G or T suffix (0 = no limit)"
	}
	return "any string"
}

// Parse validates a value given as text and returns its canonical form.
func (k *Key) Parse(v string) (string, error) {
	bad := func(why string) (string, error) {
		if why != "" {
			why = ": " + why
		}
		return "", fmt.Errorf("invalid value %q for %s%s; want %s", v, k.Name, why, k.Allowed())
	}
	v = strings.TrimSpace(v)
	switch k.Kind {
	case KindInt:
		if k.Auto && (strings.EqualFold(v, "auto") || v == "0") {
			return "auto", nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bad("")
		}
		if n < k.Min || n > k.Max {
			return bad("out of range")
		}
		return strconv.FormatInt(n, 10), nil
	case KindDuration:
		d, err := time.ParseDuration(v)
		if err != nil {
			if n, err2 := strconv.ParseInt(v, 10, 64); err2 == nil {
				d, err = time.Duration(n)*time.Second, nil // bare seconds, as Gluster takes them
			}
		}
		if err != nil {
			return bad("")
		}
		if int64(d) < k.Min || int64(d) > k.Max {
			return bad("out of range")
		}
		return d.String(), nil
	case KindBool:
		switch strings.ToLower(v) {
		case "true", "yes", "on", "1":
			return "true", nil
		case "false", "no", "off", "0":
			return "false", nil
		}
		return bad("")
	case KindChoice:
		for _, c := range k.Choices {
			if strings.EqualFold(v, c) {
				return c, nil
			}
		}
		if k.Name == "log-level" && strings.EqualFold(v, "warning") {
			return "warn", nil
		}
		return bad("")
	case KindList:
		var out []string
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if err := filter.Validate(s); err != nil {
				return bad(err.Error())
			}
			out = append(out, s)
		}
		return strings.Join(out, ","), nil
	case KindSize:
		n, err := ParseSize(v)
		if err != nil {
			return bad("")
		}
		return FormatSize(n), nil
	}
	if strings.ContainsAny(v, "\x00\n") {
		return bad("control characters")
	}
	return v, nil
}

// ParseSize reads a byte count with an optional binary K, M, G or T suffix
// (a trailing "B" or "iB" is allowed).
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	u := strings.ToUpper(s)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "IB"), "B")
	mult := int64(1)
	if u != "" {
		switch u[len(u)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:len(u)-1]
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(u), 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return int64(n * float64(mult)), nil
}

// FormatSize writes a byte count with the largest exact binary suffix.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// Effective is a session's configuration with defaults filled in.
type Effective struct {
	SyncJobs         int // 0 = auto
	BatchSize        int
	ChangeInterval   time.Duration
	RolloverInterval time.Duration
	CrawlInterval    time.Duration
	IgnoreDeletes    bool
	SyncXattrs       bool
	SyncACLs         bool
	FakeSuper        bool
	Exclude          []string
	DeleteExcluded   bool
	Compression      string
	BandwidthLimit   int64
	SSHCommand       string
	RemoteGeorep     string
	LogLevel         slog.Level
	LogFormat        string
}

// Get returns a key's value (the override, else the default) in canonical
// form, and whether it is an override.
func (s *Session) Get(name string) (string, bool, error) {
	k, err := LookupKey(name)
	if err != nil {
		return "", false, err
	}
	if v, ok := s.Config[k.Name]; ok {
		return v, true, nil
	}
	return k.Default, false, nil
}

// Set validates and stores an override.
func (s *Session) Set(name, value string) error {
	k, err := LookupKey(name)
	if err != nil {
		return err
	}
	v, err := k.Parse(value)
	if err != nil {
		return err
	}
	if s.Config == nil {
		s.Config = map[string]string{}
	}
	if v == k.Default {
		delete(s.Config, k.Name)
		return nil
	}
	s.Config[k.Name] = v
	return nil
}

// Reset drops an override.
func (s *Session) Reset(name string) error {
	k, err := LookupKey(name)
	if err != nil {
		return err
	}
	delete(s.Config, k.Name)
	return nil
}

// Effective resolves the configuration.
func (s *Session) Effective() (Effective, error) {
	get := func(n string) string {
		v, _, _ := s.Get(n)
		return v
	}
	var e Effective
	var err error
	if v := get("sync-jobs"); v != "auto" {
		if e.SyncJobs, err = strconv.Atoi(v); err != nil {
			return e, err
		}
	}
	if e.BatchSize, err = strconv.Atoi(get("batch-size")); err != nil {
		return e, err
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"change-interval", &e.ChangeInterval}, {"rollover-interval", &e.RolloverInterval}, {"crawl-interval", &e.CrawlInterval}} {
		if *d.to, err = time.ParseDuration(get(d.name)); err != nil {
			return e, err
		}
	}
	e.IgnoreDeletes = get("ignore-deletes") == "true"
	e.SyncXattrs = get("sync-xattrs") == "true"
	e.SyncACLs = get("sync-acls") == "true"
	e.FakeSuper = get("fake-super") == "true"
	if v := get("exclude"); v != "" {
		e.Exclude = strings.Split(v, ",")
	}
	e.DeleteExcluded = get("delete-excluded") == "true"
	e.Compression = get("compression")
	if e.BandwidthLimit, err = ParseSize(get("bandwidth-limit")); err != nil {
		return e, err
	}
	e.SSHCommand = get("ssh-command")
	e.RemoteGeorep = get("remote-georep")
	if err := e.LogLevel.UnmarshalText([]byte(get("log-level"))); err != nil {
		return e, err
	}
	e.LogFormat = get("log-format")
	return e, nil
}

// RestartKey reports whether changing the named key restarts a running
// worker.
func RestartKey(name string) bool {
	k, ok := Keys[name]
	return !ok || !k.Live
}
