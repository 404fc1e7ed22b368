package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/secondary"
)

func init() {
	register(command{name: "promote", summary: "make a replica a primary, fenced against its old primary (failover)", run: runPromote})
	register(command{name: "demote", summary: "make a promoted replica a secondary again (failback)", run: runDemote})
}

const promoteHelp = `Run on the secondary host, on the replica's root, when its primary is lost:
the replica becomes a primary users may write to, and it is fenced: every
session that would replicate into it (the old primary's 'georep sync' or
daemon session, once it is back) is refused with a message naming this
promotion, so what users write here is never overwritten. 'georep demote'
undoes it.

Failback, once the old primary P is back (S is the promoted replica):
  on S:  georep sync S P --force       # P brought up to date, adopting what it has
  on P:  georep promote P              # P is a primary again, fenced against S
  on S:  georep demote S               # S accepts P's session again, which resumes

example:
  georep promote /srv/replica`

func runPromote(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("promote", flag.ContinueOnError)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a session still writing the replica")
	root, err := roleRoot(fs, args, "promote", promoteHelp)
	if err != nil {
		return err
	}
	p, err := secondary.Promote(root, *wait)
	if err != nil {
		return err
	}
	fmt.Printf("%s promoted to a primary at %s on %s: sessions replicating into it are refused from now on\n",
		root, p.Time.UTC().Format(time.RFC3339), p.Host)
	fmt.Printf("undo with: georep demote %s\n", root)
	return nil
}

const demoteHelp = `Run on the host of a promoted root: it becomes a secondary again and
accepts sessions (a primary other than the one it replicated before still
needs --force). Its stime is forgotten, so the next session crawls the whole
tree, adopting what is there instead of sending it again.

example:
  georep demote /srv/replica`

func runDemote(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demote", flag.ContinueOnError)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for a session still holding the root")
	root, err := roleRoot(fs, args, "demote", demoteHelp)
	if err != nil {
		return err
	}
	if err := secondary.Demote(root, *wait); err != nil {
		return err
	}
	fmt.Printf("%s is a secondary again: it accepts replication (its next session crawls the whole tree)\n", root)
	return nil
}

// roleRoot parses a promote/demote command line: flags and one PATH.
func roleRoot(fs *flag.FlagSet, args []string, verb, help string) (string, error) {
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep "+verb+" PATH [flags]", help)
		}
		return "", err
	}
	if len(pos) != 1 {
		return "", cli.Usagef("need the replica's root PATH (see georep %s --help)", verb)
	}
	return filepath.Abs(pos[0])
}
