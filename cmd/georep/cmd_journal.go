package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/worker"
)

func init() {
	register(command{name: "journal", summary: "the change journal process: changelogs for every session root, outliving the daemon", run: runJournal})
}

const journalHelp = `Holds the fanotify groups (one per filesystem) for the roots of every
session of the state directory, writes their changelogs under
<state>/journal/roots/ and keeps them until every session reading them has
applied them (at most --max-changelog-bytes per root: past it the oldest are
dropped and those sessions crawl). Workers and daemons then stop, crash and
restart without a crawl. The daemon starts it when none runs; systemd:
dist/georep-journal.service. SIGTERM stops it cleanly; SIGUSR2 (or
'georep journal reexec') hands its groups to the binary on disk (an upgrade)
without losing an event.

  georep journal [--state-dir DIR]      run it (foreground)
  georep journal status [--json]        what it journals, for whom, since when
  georep journal reexec                 hand over to the binary on disk

example:
  georep journal --state-dir /var/lib/georep --max-changelog-bytes 4294967296`

func runJournal(ctx context.Context, args []string) error {
	if len(args) > 0 && (args[0] == "status" || args[0] == "reexec") {
		return journalClientCmd(ctx, args[0], args[1:])
	}
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	maxBytes := fs.Int64("max-changelog-bytes", service.DefaultMaxBytes, "most bytes of changelogs kept per root")
	queue := fs.Int("queue-size", 0, "fanotify queue length (0 = kernel default; testing: tiny queues force overflows)")
	rollover := fs.Duration("rollover-interval", time.Second, "longest a changelog stays open, for roots whose sessions give none (a session's rollover-interval, the shortest of a root's sessions, wins)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep journal [--state-dir DIR] [--max-changelog-bytes N]", journalHelp)
		}
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *logFormat != "text" && *logFormat != "json" {
		return cli.Usagef("--log-format must be text or json")
	}
	abs, err := filepath.Abs(cli.StateDir(*stateDir))
	if err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	err = service.Run(ctx, service.Options{Dir: filepath.Join(abs, "journal"), Exclude: []string{abs}, MaxBytes: *maxBytes,
		QueueSize: *queue, RolloverInterval: *rollover, Logger: slog.New(h), Version: worker.Version, Reexec: usr2})
	if errors.Is(err, service.ErrAlreadyRunning) {
		fmt.Fprintf(os.Stderr, "georep journal: %v\n", err)
		return errExit1
	}
	return err
}

func journalClientCmd(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("journal "+verb, flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	asJSON := fs.Bool("json", false, "print JSON (status)")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep journal "+verb+" [--state-dir DIR]", journalHelp)
		}
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	c := service.Client{Dir: filepath.Join(cli.StateDir(*stateDir), "journal")}
	if verb == "reexec" {
		if err := c.Reexec(ctx); err != nil {
			return err
		}
		fmt.Println("journal process handing over to the binary on disk")
		return nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return service.WriteStatusJSON(os.Stdout, st)
	}
	return service.WriteStatus(os.Stdout, st)
}

// spawnJournal starts `georep journal` on the state directory, detached,
// unless one answers; its output goes to <state>/journal/journal.log.
func spawnJournal(ctx context.Context, stateDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir := filepath.Join(stateDir, "journal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return service.Client{Dir: dir}.Spawn(ctx, exe, []string{"journal", "--state-dir", stateDir}, filepath.Join(dir, "journal.log"))
}
