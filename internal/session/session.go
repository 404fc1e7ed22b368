// Package session owns georep's sessions on disk: a named primary →
// secondary pair, its state (Created, Started, Paused, Stopped), its
// checkpoint and its validated configuration, kept as TOML in the state
// directory:
//
//	<state>/georep.sock                    the daemon's control socket
//	<state>/daemon.lock, daemon.log         one daemon per state dir; its log
//	<state>/sessions/<name>/config.toml     what the CLI set (only the CLI writes it)
//	<state>/sessions/<name>/stime           the last stime (the worker writes it)
//	<state>/sessions/<name>/failures.json   entries that could not be synced
//	<state>/sessions/<name>/status.json     the daemon's last status (atomically)
//	<state>/sessions/<name>/changelogs/     the journal's closed changelogs
//	<state>/sessions/<name>/georep.log      the session's log
//
// config.toml holds only the overrides of the config keys (see Keys); the
// rest are defaults. Changes are made under a lock (config.lock) and
// written atomically.
package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/georep/georep/internal/state"
	"golang.org/x/sys/unix"
)

// State is what the operator asked a session to be.
type State string

// Session states (the operator's; the worker's own status is reported by
// the daemon).
const (
	Created State = "Created"
	Started State = "Started"
	Paused  State = "Paused"
	Stopped State = "Stopped"
)

// Session is one session's config.toml.
type Session struct {
	Name      string    `toml:"name"`
	Primary   string    `toml:"primary"`
	Secondary string    `toml:"secondary"`
	CreatedAt time.Time `toml:"created"`
	State     State     `toml:"state"`
	// Checkpoint is the set checkpoint (zero: none); CheckpointSetAt is
	// when it was set.
	Checkpoint      time.Time `toml:"checkpoint,omitempty"`
	CheckpointSetAt time.Time `toml:"checkpoint_set_at,omitempty"`
	// Config holds the overridden keys, in canonical text form.
	Config map[string]string `toml:"-"`
}

// file is the TOML shape: config values in their natural TOML types.
type file struct {
	Name            string         `toml:"name"`
	Primary         string         `toml:"primary"`
	Secondary       string         `toml:"secondary"`
	CreatedAt       time.Time      `toml:"created"`
	State           State          `toml:"state"`
	Checkpoint      time.Time      `toml:"checkpoint,omitempty"`
	CheckpointSetAt time.Time      `toml:"checkpoint_set_at,omitempty"`
	Config          map[string]any `toml:"config"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName checks a session name: letters, digits, '.', '_', '-', at most
// 64, not starting with a punctuation mark.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid session name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Store is a state directory.
type Store struct{ Root string }

// ErrNotFound is returned for a session that does not exist.
var ErrNotFound = errors.New("no such session")

// Paths of the state directory.
func (s Store) SessionsDir() string        { return filepath.Join(s.Root, "sessions") }
func (s Store) Dir(name string) string     { return filepath.Join(s.Root, "sessions", name) }
func (s Store) SocketPath() string         { return filepath.Join(s.Root, "georep.sock") }
func (s Store) DaemonLock() string         { return filepath.Join(s.Root, "daemon.lock") }
func (s Store) DaemonLog() string          { return filepath.Join(s.Root, "daemon.log") }
func (s Store) ConfigPath(n string) string { return filepath.Join(s.Dir(n), "config.toml") }
func (s Store) StimePath(n string) string  { return filepath.Join(s.Dir(n), "stime") }
func (s Store) StatusPath(n string) string { return filepath.Join(s.Dir(n), "status.json") }
func (s Store) LogPath(n string) string    { return filepath.Join(s.Dir(n), "georep.log") }
func (s Store) FailuresPath(n string) string {
	return filepath.Join(s.Dir(n), "failures.json")
}

// Init creates the state directory and its sessions directory, both
// root-only (mode 0700) when it creates them; an existing directory keeps
// its mode (the control socket is 0600 and checks its peers anyway).
func (s Store) Init() error {
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := os.Mkdir(s.SessionsDir(), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// Create makes a new session directory and its config.toml. It fails if a
// session of that name, or one with the same primary and secondary, exists.
func (s Store) Create(sess *Session) error {
	if err := ValidName(sess.Name); err != nil {
		return err
	}
	if err := s.Init(); err != nil {
		return err
	}
	list, err := s.List()
	if err != nil {
		return err
	}
	for _, e := range list {
		if e.Session != nil && e.Session.Primary == sess.Primary && e.Session.Secondary == sess.Secondary {
			return fmt.Errorf("session %q already replicates %s to %s", e.Name, sess.Primary, sess.Secondary)
		}
	}
	if err := os.Mkdir(s.Dir(sess.Name), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("session %q already exists", sess.Name)
		}
		return err
	}
	if sess.State == "" {
		sess.State = Created
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = time.Now()
	}
	if err := s.save(sess); err != nil {
		os.RemoveAll(s.Dir(sess.Name))
		return err
	}
	return nil
}

// Load reads a session's config.toml and validates it.
func (s Store) Load(name string) (*Session, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.ConfigPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %q (in %s)", ErrNotFound, name, s.SessionsDir())
	}
	if err != nil {
		return nil, err
	}
	sess, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.ConfigPath(name), err)
	}
	if sess.Name != name {
		return nil, fmt.Errorf("%s: names session %q, not %q", s.ConfigPath(name), sess.Name, name)
	}
	return sess, nil
}

func decode(b []byte) (*Session, error) {
	var f file
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("unknown entry %s", und[0])
	}
	sess := &Session{Name: f.Name, Primary: f.Primary, Secondary: f.Secondary, CreatedAt: f.CreatedAt, State: f.State,
		Checkpoint: f.Checkpoint, CheckpointSetAt: f.CheckpointSetAt, Config: map[string]string{}}
	switch sess.State {
	case Created, Started, Paused, Stopped:
	default:
		return nil, fmt.Errorf("invalid state %q", sess.State)
	}
	if sess.Primary == "" || sess.Secondary == "" {
		return nil, errors.New("primary and secondary are required")
	}
	for name, v := range f.Config {
		k, err := LookupKey(name)
		if err != nil {
			return nil, fmt.Errorf("[config] %w", err)
		}
		var text string
		switch x := v.(type) {
		case string:
			text = x
		case int64:
			text = fmt.Sprint(x)
		case bool:
			text = fmt.Sprint(x)
		case float64:
			text = fmt.Sprint(x)
		case []any:
			var parts []string
			for _, p := range x {
				ps, ok := p.(string)
				if !ok {
					return nil, fmt.Errorf("[config] %s: list of strings expected", name)
				}
				parts = append(parts, ps)
			}
			text = strings.Join(parts, ",")
		default:
			return nil, fmt.Errorf("[config] %s: unexpected %T", name, v)
		}
		canon, err := k.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("[config] %w", err)
		}
		if canon != k.Default {
			sess.Config[k.Name] = canon
		}
	}
	return sess, nil
}

// Encode renders a session as config.toml.
func Encode(sess *Session) ([]byte, error) {
	f := file{Name: sess.Name, Primary: sess.Primary, Secondary: sess.Secondary, CreatedAt: sess.CreatedAt.Round(time.Second),
		State: sess.State, Checkpoint: sess.Checkpoint, CheckpointSetAt: sess.CheckpointSetAt, Config: map[string]any{}}
	for name, v := range sess.Config {
		k, ok := Keys[name]
		if !ok {
			return nil, fmt.Errorf("unknown config key %q", name)
		}
		switch k.Kind {
		case KindInt:
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil && v != "auto" {
				f.Config[name] = n
				continue
			}
			f.Config[name] = v
		case KindBool:
			f.Config[name] = v == "true"
		case KindList:
			parts := []string{}
			if v != "" {
				parts = strings.Split(v, ",")
			}
			f.Config[name] = parts
		default:
			f.Config[name] = v
		}
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# georep session %q. Change it with georep commands (session, config, checkpoint):\n"+
		"# the running daemon is told of their changes. [config] holds only what differs from the defaults.\n", sess.Name)
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s Store) save(sess *Session) error {
	b, err := Encode(sess)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(s.ConfigPath(sess.Name), b, 0o600)
}

// Update changes a session under its lock: fn edits the loaded session and
// the result is written atomically (nothing is written if fn fails).
func (s Store) Update(name string, fn func(*Session) error) (*Session, error) {
	if _, err := s.Load(name); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(s.Dir(name), "config.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	sess, err := s.Load(name)
	if err != nil {
		return nil, err
	}
	if err := fn(sess); err != nil {
		return nil, err
	}
	if err := s.save(sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// Delete removes a session's directory (config, stime, failures, status,
// changelogs, log).
func (s Store) Delete(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if _, err := os.Stat(s.ConfigPath(name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w %q (in %s)", ErrNotFound, name, s.SessionsDir())
		}
		return err
	}
	// The config goes first: a half-removed directory is no session.
	if err := os.Remove(s.ConfigPath(name)); err != nil {
		return err
	}
	return os.RemoveAll(s.Dir(name))
}

// Entry is a listed session, or the error that kept it from loading.
type Entry struct {
	Name    string
	Session *Session
	Err     error
}

// List returns every session, sorted by name.
func (s Store) List() ([]Entry, error) {
	ents, err := os.ReadDir(s.SessionsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(s.ConfigPath(e.Name())); errors.Is(err, os.ErrNotExist) {
			continue // being created or deleted
		}
		sess, err := s.Load(e.Name())
		out = append(out, Entry{Name: e.Name(), Session: sess, Err: err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// CheckpointLayouts are the accepted checkpoint times besides "now".
const checkpointLocal = "2006-01-02 15:04:05"

// ParseCheckpoint reads a checkpoint time: "now", RFC 3339
// ("2026-01-02T15:04:05Z", "...+02:00") or "YYYY-MM-DD HH:MM:SS" in local
// time.
func ParseCheckpoint(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "now") {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(checkpointLocal, v, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", v, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid checkpoint time %q: use now, RFC 3339 (2006-01-02T15:04:05Z07:00) or \"YYYY-MM-DD HH:MM:SS\" (local time)", v)
}
