package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/daemon"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/worker"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{name: "failures", summary: "list the entries a session could not sync (path, op, error, errno)", run: runFailures})
	register(command{name: "resync", summary: "re-send a session's tree or a subtree; clears the failures that now succeed", run: runResync})
}

const failuresHelp = `Lists the entries a session's worker could not sync (from the session's
failures.json): path (relative to the primary root), operation, error and
errno. Replication goes on past them; fix the cause, then 'georep resync
NAME [PATH]' re-sends them and clears those that succeed.

example:
  georep failures backup`

const resyncHelp = `Asks the running session to re-send its whole tree (a crawl that also
re-applies every file's metadata) or, with PATH (relative to the primary
root, or absolute under it), that subtree: every entry under PATH is
reconciled and every file's content re-checked. Recorded failures that now
succeed are cleared; those that still fail are kept with their new error.
A PATH gone from the primary is removed from the secondary (unless
ignore-deletes). Needs the daemon and a started session; waits until done.

example:
  georep resync backup projects/x`

func runFailures(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("failures", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep failures NAME [--json]", failuresHelp)
		}
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("usage: georep failures NAME")
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	if _, err := store.Load(pos[0]); err != nil {
		return err
	}
	var list []worker.Failure
	if err := state.ReadJSON(store.FailuresPath(pos[0]), &list); err != nil {
		return fmt.Errorf("failures.json: %w", err)
	}
	if *asJSON {
		type row struct {
			Path      string `json:"path"`
			Op        string `json:"op"`
			Error     string `json:"error"`
			Errno     uint32 `json:"errno"`
			ErrnoName string `json:"errno_name,omitempty"`
			ID        string `json:"id"`
		}
		rows := []row{}
		for _, f := range list {
			rows = append(rows, row{Path: f.Path, Op: f.Op, Error: f.Error, Errno: f.Errno, ErrnoName: errnoName(f.Errno), ID: string(f.ID)})
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(list) == 0 {
		fmt.Printf("%s: no failures\n", pos[0])
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tOP\tERRNO\tERROR")
	for _, f := range list {
		en := errnoName(f.Errno)
		if en == "" {
			en = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printablePath(f.Path), f.Op, en, f.Error)
	}
	tw.Flush()
	fmt.Printf("%d failures; after fixing the cause: georep resync %s [PATH]\n", len(list), pos[0])
	return nil
}

// printablePath quotes a path only when it holds unprintable bytes.
func printablePath(p string) string {
	if q := strconv.Quote(p); q[1:len(q)-1] != p {
		return q
	}
	return p
}

func errnoName(n uint32) string {
	if n == 0 {
		return ""
	}
	if s := unix.ErrnoName(syscall.Errno(n)); s != "" {
		return s
	}
	return strconv.Itoa(int(n))
}

func runResync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("resync", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	timeout := fs.Duration("timeout", time.Hour, "give up waiting after this long")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep resync NAME [PATH]", resyncHelp)
		}
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return cli.Usagef("usage: georep resync NAME [PATH]")
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	if _, err := store.Load(pos[0]); err != nil {
		return err
	}
	path := ""
	if len(pos) == 2 {
		path = pos[1]
	}
	resp, err := daemon.Call(ctx, store.Root, daemon.Request{Op: daemon.OpResync, Session: pos[0], Path: path, TimeoutMS: timeout.Milliseconds()})
	if err != nil {
		if err == daemon.ErrNoDaemon {
			return fmt.Errorf("%w: start it (a started session crawls what it missed when it starts)", err)
		}
		return err
	}
	r := resp.Resync
	what := r.Path
	if what == "" {
		what = "the whole tree"
	}
	fmt.Printf("resync of %s: %s; %d failures cleared, %d still failing\n", what, r.Job, r.Cleared, r.Failures)
	if r.Failures > 0 {
		fmt.Printf("see: georep failures %s\n", pos[0])
		return errExit1
	}
	return nil
}
