package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/daemon"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/worker"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{name: "session", summary: "create, start, stop, pause, resume, delete or list sessions", run: runSession})
}

const sessionHelp = `Sessions are named primary -> secondary pairs run by 'georep daemon'.

  georep session create NAME SRC DST [--ssh-command CMD] [--remote-georep CMD] [--force]
      Checks that the secondary answers and speaks our protocol version (a
      handshake), and refuses a secondary root that holds anything besides
      georep's own .georep unless --force. A root that already holds this
      primary's replica (its .georep names this primary root) is not "non-
      empty": the session resumes from the stime recorded there.
      A local secondary is examined before the handshake; a remote one only
      after it, and the handshake resets an index another primary left
      there (its files stay).
  georep session start NAME          run it (Created or Stopped -> Started)
  georep session pause NAME          hold it between batches; the journal keeps recording
  georep session resume NAME         continue a paused session
  georep session stop NAME           stop its worker
  georep session delete NAME [--reset-sync-time]
      Removes a stopped session's state (config, stime, changelogs, logs).
      The secondary keeps its data and its stime, so a session created again
      for it resumes; --reset-sync-time also sets the secondary's stime to 0,
      so the next session re-checks every file's metadata.
  georep session list [--json]

A running daemon applies every change at once (the command returns when it
has: a paused session applies nothing more); without one, the change is kept
for its next start.

example:
  georep session create backup /srv/data dr@dr-site:/srv/data --ssh-command "ssh -i /root/.ssh/georep"
  georep session start backup`

type sessionFlags struct {
	stateDir, sshCommand, remoteGeorep string
	force, resetSyncTime, json         bool
}

func runSession(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("session", flag.ContinueOnError)
	var f sessionFlags
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	fs.StringVar(&f.sshCommand, "ssh-command", "", `create: ssh command for a remote DST, e.g. "ssh -p 2222 -i KEY" (kept as the ssh-command key)`)
	fs.StringVar(&f.remoteGeorep, "remote-georep", "", "create: georep command on the secondary host (kept as the remote-georep key)")
	fs.BoolVar(&f.force, "force", false, "create: accept a secondary root that is not empty")
	fs.BoolVar(&f.resetSyncTime, "reset-sync-time", false, "delete: also reset the secondary's stime to 0")
	fs.BoolVar(&f.json, "json", false, "list: JSON output")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep session create|start|stop|pause|resume|delete|list ...", sessionHelp)
		}
		return err
	}
	if len(pos) == 0 {
		return cli.Usagef("need a subcommand: create, start, stop, pause, resume, delete or list")
	}
	store := session.Store{Root: cli.StateDir(f.stateDir)}
	sub, rest := pos[0], pos[1:]
	need := func(n int, what string) error {
		if len(rest) != n {
			return cli.Usagef("usage: georep session %s %s", sub, what)
		}
		return nil
	}
	switch sub {
	case "create":
		if err := need(3, "NAME SRC DST"); err != nil {
			return err
		}
		return sessionCreate(ctx, store, rest[0], rest[1], rest[2], f)
	case "start", "stop", "pause", "resume":
		if err := need(1, "NAME"); err != nil {
			return err
		}
		return sessionTransition(ctx, store, sub, rest[0])
	case "delete":
		if err := need(1, "NAME [--reset-sync-time]"); err != nil {
			return err
		}
		return sessionDelete(ctx, store, rest[0], f.resetSyncTime)
	case "list":
		if err := need(0, "[--json]"); err != nil {
			return err
		}
		return sessionList(store, f.json)
	}
	return cli.Usagef("unknown subcommand %q (create, start, stop, pause, resume, delete, list)", sub)
}

// notifyDaemon asks a running daemon to apply a session's config.toml. It
// reports whether a daemon answered.
func notifyDaemon(ctx context.Context, store session.Store, name string) (*daemon.Response, bool, error) {
	resp, err := daemon.Call(ctx, store.Root, daemon.Request{Op: daemon.OpReload, Session: name})
	if errors.Is(err, daemon.ErrNoDaemon) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return resp, true, nil
}

func noDaemonNote(what string) {
	fmt.Printf("note: no georep daemon runs for this state directory; %s when it starts (systemctl start georep, or georep daemon)\n", what)
}

func sessionCreate(ctx context.Context, store session.Store, name, src, dstArg string, f sessionFlags) error {
	if err := session.ValidName(name); err != nil {
		return cli.Usagef("%v", err)
	}
	src, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return fmt.Errorf("primary %s is not a directory", src)
	}
	dst, err := transport.ParseDestination(dstArg)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	if dst.Host == "" {
		if dst.Path, err = filepath.Abs(dst.Path); err != nil {
			return err
		}
	}
	if _, err := store.Load(name); err == nil {
		return fmt.Errorf("session %q already exists", name)
	}
	sess := &session.Session{Name: name, Primary: src, Secondary: dst.String()}
	for k, v := range map[string]string{"ssh-command": f.sshCommand, "remote-georep": f.remoteGeorep} {
		if v != "" {
			if err := sess.Set(k, v); err != nil {
				return cli.Usagef("%v", err)
			}
		}
	}
	eff, _ := sess.Effective()
	absState, _ := filepath.Abs(store.Root)

	// A local secondary is looked at before the handshake, which would
	// create .georep there (and forget another primary's index).
	rootID, err := primaryRootID(src)
	if err != nil {
		return err
	}
	if dst.Host == "" {
		// A missing secondary root is created by the handshake, as over
		// ssh (and as rsync creates its destination).
		fi, err := os.Stat(dst.Path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("secondary %s: %w", dst.Path, err)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("secondary %s is not a directory", dst.Path)
		}
		if n, ours := localContents(dst.Path, rootID); err == nil && n > 0 && !ours && !f.force {
			return fmt.Errorf("secondary %s is not empty (%d entries besides .georep): georep would make it a copy of %s, removing what the primary lacks; use --force to accept", dst.Path, n, src)
		}
	}
	// Check first, write second: the check session creates, locks and
	// resets nothing on the secondary, so a refusal leaves it as it was.
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	wcfg := worker.Config{Source: src, Dest: dst, SSHCommand: eff.SSHCommand, RemoteGeorep: eff.RemoteGeorep,
		ExcludePaths: []string{absState}, Stderr: os.Stderr, Force: f.force, Check: true}
	ws, err := worker.Connect(cctx, wcfg)
	if err != nil {
		return fmt.Errorf("secondary check failed: %w", err)
	}
	hello := *ws.Hello
	ws.Close()
	if hello.NewRoot && hello.Entries > 0 && !f.force {
		return fmt.Errorf("secondary %s is not empty (%d entries besides .georep): georep would make it a copy of %s, removing what the primary lacks; use --force to accept", dst, hello.Entries, src)
	}
	if hello.NewRoot && (f.force || hello.Entries == 0) {
		// The check passed: claim the root for this primary now, so the
		// session's worker (which never forces) finds it ours; a missing
		// root is created, as rsync creates its destination.
		wcfg.Check = false
		ws, err := worker.Connect(cctx, wcfg)
		if err != nil {
			return fmt.Errorf("claim the secondary: %w", err)
		}
		ws.Close()
	}
	if err := store.Create(sess); err != nil {
		return err
	}
	fmt.Printf("session %s created: %s -> %s (secondary georep %s, protocol %d)\n", name, src, dst, hello.Software, hello.Version)
	if !hello.NewRoot && hello.Stime > 0 {
		if err := state.WriteStime(store.StimePath(name), hello.Stime); err != nil {
			return err
		}
		fmt.Printf("the secondary already holds this primary's replica, in sync up to %s: the session resumes from there\n",
			time.Unix(0, hello.Stime).Format("2006-01-02 15:04:05"))
	}
	if hello.FakeSuper {
		fmt.Println("note: the secondary is not root: owners, groups and device files are kept in user.georep.stat xattrs (fake-super)")
	}
	fmt.Printf("start it with: georep session start %s\n", name)
	return nil
}

// primaryRootID is the ID the secondary's .georep/root records for src.
func primaryRootID(src string) (fileid.ID, error) {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("primary %s: %w", src, err)
	}
	defer unix.Close(fd)
	fsid, err := fileid.FSIDOf(fd)
	if err != nil {
		return "", err
	}
	id, err := fileid.Of(fsid, fd, "")
	if err != nil {
		return "", fmt.Errorf("primary %s: file handles are not supported here: %w", src, err)
	}
	return id, nil
}

// localContents counts the entries of a local secondary root besides
// .georep, and says whether its .georep is this primary's.
func localContents(dir string, rootID fileid.ID) (int, bool) {
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if e.Name() != ".georep" {
			n++
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, ".georep", "root"))
	return n, err == nil && fileid.ID(strings.TrimSpace(string(b))) == rootID
}

var transitions = map[string]struct {
	from []session.State
	to   session.State
	done string
}{
	"start":  {[]session.State{session.Created, session.Stopped}, session.Started, "started"},
	"stop":   {[]session.State{session.Started, session.Paused}, session.Stopped, "stopped"},
	"pause":  {[]session.State{session.Started}, session.Paused, "paused"},
	"resume": {[]session.State{session.Paused}, session.Started, "resumed"},
}

func sessionTransition(ctx context.Context, store session.Store, verb, name string) error {
	tr := transitions[verb]
	_, err := store.Update(name, func(s *session.Session) error {
		for _, st := range tr.from {
			if s.State == st {
				s.State = tr.to
				return nil
			}
		}
		return fmt.Errorf("session %s is %s: cannot %s it", name, s.State, verb)
	})
	if err != nil {
		return err
	}
	resp, live, err := notifyDaemon(ctx, store, name)
	if err != nil {
		return fmt.Errorf("session %s %s in its config, but the daemon failed to apply it: %w", name, tr.done, err)
	}
	fmt.Printf("session %s %s\n", name, tr.done)
	if !live {
		if verb == "start" || verb == "resume" {
			noDaemonNote("it runs")
		}
		return nil
	}
	if resp != nil && len(resp.Reports) == 1 {
		r := resp.Reports[0]
		fmt.Printf("status: %s\n", r.Status)
	}
	return nil
}

func sessionDelete(ctx context.Context, store session.Store, name string, reset bool) error {
	sess, err := store.Load(name)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		// A corrupt config can still be deleted.
		if _, serr := os.Stat(store.ConfigPath(name)); serr != nil {
			return err
		}
		if reset {
			return fmt.Errorf("%v; cannot reset the secondary's stime (delete without --reset-sync-time)", err)
		}
	} else if err != nil {
		return err
	}
	if sess != nil && sess.State != session.Created && sess.State != session.Stopped {
		return fmt.Errorf("session %s is %s: stop it first (georep session stop %s)", name, sess.State, name)
	}
	if reset && sess != nil {
		dst, err := transport.ParseDestination(sess.Secondary)
		if err != nil {
			return err
		}
		eff, _ := sess.Effective()
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		ws, err := worker.Connect(cctx, worker.Config{Source: sess.Primary, Dest: dst, SSHCommand: eff.SSHCommand, RemoteGeorep: eff.RemoteGeorep,
			FakeSuper: eff.FakeSuper, Stderr: os.Stderr})
		if err != nil {
			return fmt.Errorf("reset the secondary's stime: %w (fix the link, or delete without --reset-sync-time)", err)
		}
		err = ws.CommitStime(cctx, 0)
		ws.Close()
		if err != nil {
			return fmt.Errorf("reset the secondary's stime: %w", err)
		}
		fmt.Printf("the secondary's stime was reset: a new session re-checks every file\n")
	}
	if err := store.Delete(name); err != nil {
		return err
	}
	if _, _, err := notifyDaemon(ctx, store, name); err != nil {
		fmt.Fprintf(os.Stderr, "warning: the daemon: %v\n", err)
	}
	os.RemoveAll(store.Dir(name)) // anything written meanwhile
	fmt.Printf("session %s deleted\n", name)
	if !reset {
		fmt.Printf("the secondary keeps its data and stime: a session created again for it resumes\n")
	}
	return nil
}

func sessionList(store session.Store, asJSON bool) error {
	list, err := store.List()
	if err != nil {
		return err
	}
	type row struct {
		Name       string     `json:"name"`
		State      string     `json:"state"`
		Primary    string     `json:"primary"`
		Secondary  string     `json:"secondary"`
		Created    *time.Time `json:"created"`
		Checkpoint *time.Time `json:"checkpoint"`
		Error      string     `json:"error,omitempty"`
	}
	rows := []row{}
	for _, e := range list {
		r := row{Name: e.Name}
		if e.Err != nil {
			r.State, r.Error = "Config Corrupted", e.Err.Error()
		} else {
			s := e.Session
			r.State, r.Primary, r.Secondary = string(s.State), s.Primary, s.Secondary
			r.Created, r.Checkpoint = status.TimePtr(s.CreatedAt), status.TimePtr(s.Checkpoint)
		}
		rows = append(rows, r)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		fmt.Println("No sessions.")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPRIMARY\tSECONDARY\tCHECKPOINT")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", r.Name, r.State, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, r.Primary, r.Secondary, status.FormatTime(r.Checkpoint))
	}
	return tw.Flush()
}

// sessionReports returns the live reports of the daemon, or reports read
// from the state directory when no daemon answers. name "" means all.
func sessionReports(ctx context.Context, store session.Store, name string) ([]status.Report, error) {
	if name != "" {
		if _, err := store.Load(name); err != nil {
			if errors.Is(err, session.ErrNotFound) {
				return nil, err
			}
		}
	}
	resp, err := daemon.Call(ctx, store.Root, daemon.Request{Op: daemon.OpStatus, Session: name})
	if err == nil {
		return resp.Reports, nil
	}
	if !errors.Is(err, daemon.ErrNoDaemon) {
		fmt.Fprintf(os.Stderr, "warning: the daemon did not answer (%v); showing the state directory\n", err)
	}
	list, err := store.List()
	if err != nil {
		return nil, err
	}
	var out []status.Report
	meantToRun := false
	for _, e := range list {
		if name == "" || e.Name == name {
			out = append(out, status.Offline(store, e))
			if e.Session != nil && (e.Session.State == session.Started || e.Session.State == session.Paused) {
				meantToRun = true
			}
		}
	}
	if meantToRun {
		fmt.Fprintln(os.Stderr, "note: no georep daemon runs for this state directory: started sessions show Stopped (systemctl start georep, or georep daemon)")
	}
	return out, nil
}
