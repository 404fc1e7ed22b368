package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
	"golang.org/x/term"
)

func init() {
	register(command{name: "status", summary: "show the sessions' status (table, --detail, --json, --watch)", run: runStatus})
}

const statusHelp = `Shows, per session: PRIMARY, SECONDARY, STATUS (Created, Initializing,
Active, Passive, Paused, Stopped, Faulty), CRAWL STATUS (Hybrid Crawl while
the tree is crawled, Changelog Crawl while the journal is followed), LAST
SYNCED (the stime, local time: the secondary holds everything the primary had
then), LAG (age of the oldest change not yet applied), ENTRY, DATA and META
(operations of the batch in progress) and FAILURES (entries that could not be
synced: georep failures NAME). --detail adds files and bytes synced since the
worker started, the checkpoint (time, completed, completion time) and the
last error. --json prints the same fields as a JSON array with stable
snake_case names. Without a running daemon the state directory's last
status is shown, with STATUS Stopped for sessions meant to run.

example:
  georep status
  georep status backup --detail
  georep status --json | jq '.[] | {session, status, lag_seconds}'`

func runStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	detail := fs.Bool("detail", false, "also files and bytes synced, checkpoint and last error")
	asJSON := fs.Bool("json", false, "JSON output")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "--watch refresh interval")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep status [NAME] [--detail] [--json] [--watch]", statusHelp)
		}
		return err
	}
	if len(pos) > 1 {
		return cli.Usagef("at most one session NAME")
	}
	name := ""
	if len(pos) == 1 {
		name = pos[0]
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	show := func() error {
		reports, err := sessionReports(ctx, store, name)
		if err != nil {
			return err
		}
		if *asJSON {
			return status.WriteJSON(os.Stdout, reports)
		}
		if len(reports) == 0 {
			fmt.Println("No georep sessions (create one with: georep session create NAME SRC DST).")
			return nil
		}
		return status.WriteTable(os.Stdout, reports, *detail)
	}
	if !*watch {
		return show()
	}
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	for {
		if tty && !*asJSON {
			fmt.Print("\033[H\033[2J")
			fmt.Printf("georep status, every %s: %s\n\n", *interval, time.Now().Format("2006-01-02 15:04:05"))
		}
		if err := show(); err != nil {
			return err
		}
		if !tty {
			fmt.Println()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}
