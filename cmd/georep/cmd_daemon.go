package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/daemon"
	"github.com/georep/georep/internal/session"
)

func init() {
	register(command{name: "daemon", summary: "run every started session (one daemon per host): monitor, control socket, metrics", run: runDaemon})
}

const daemonHelp = `Runs one continuous worker per started session of the state directory,
under a monitor: a worker that fails is restarted with exponential backoff;
after repeated failures it shows Faulty with its last error and is retried
slowly, so fixing the cause (a secondary back up, a key installed) brings it
back to Active without restarting the daemon. The CLI (session, config,
checkpoint, status, resync) talks to it over <state>/georep.sock (root only).
SIGTERM or SIGINT stop it cleanly (workers stopped, journals closed, status
written); SIGHUP reopens the log files. Logs: the daemon's on stderr and in
<state>/daemon.log, each session's in <state>/sessions/NAME/georep.log.
systemd: dist/georep.service.

example:
  georep daemon --metrics-listen 127.0.0.1:9877`

func runDaemon(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9877)")
	logFormat := fs.String("log-format", "text", "daemon log format: text or json")
	logLevel := fs.String("log-level", "info", "daemon log level: debug, info, warn or error")
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "longest wait between reconnects and worker restarts")
	faultyAfter := fs.Int("faulty-after", 5, "failures within 10 minutes after which a worker is retried only every 2×max-backoff")
	faultyRestart := fs.Duration("faulty-restart", 5*time.Minute, "restart a worker that has been Faulty this long")
	journalMode := fs.String("journal", "process", "where workers get changelogs: process (the journal process, started when none runs) or inline (a journal per worker)")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep daemon [--state-dir DIR] [--metrics-listen ADDR]", daemonHelp)
		}
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cli.Usagef("--log-level: %v", err)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return cli.Usagef("--log-format must be text or json")
	}
	if *journalMode != "process" && *journalMode != "inline" {
		return cli.Usagef("--journal must be process or inline")
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	if err := store.Init(); err != nil {
		return err
	}
	lf, err := daemon.OpenLog(store.DaemonLog())
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer lf.Close()
	log := daemon.NewLogger(io.MultiWriter(os.Stderr, lf), *logFormat, level)
	abs, _ := filepath.Abs(store.Root)
	opts := daemon.Options{StateDir: abs, MetricsListen: *metricsListen, Logger: log,
		MaxBackoff: *maxBackoff, FaultyAfter: *faultyAfter, FaultyRestart: *faultyRestart,
		Reopen: func() { lf.Reopen() }}
	if *journalMode == "process" {
		opts.StartJournal = func(ctx context.Context) error { return spawnJournal(ctx, abs) }
	}
	return daemon.Run(ctx, opts)
}
