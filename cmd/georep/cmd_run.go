package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/worker"
)

func init() {
	register(command{name: "run", summary: "replicate SRC to DST continuously (foreground) from the change journal", run: runRun})
}

const runHelp = `Journals every change under SRC with fanotify and replicates it to DST
continuously: closed changelogs newer than the stime are applied in batches,
then the stime advances on both sides. What the journal cannot vouch for
(first start, downtime, a queue overflow) is crawled. SIGINT or SIGTERM stop
it cleanly; a restart resumes from the stime. Without CAP_SYS_ADMIN or FID
support it says so and crawls periodically instead.

example:
  georep run /srv/data backup@dr-site:/srv/data --state-dir /var/lib/georep
  georep run -z --bwlimit 20M /srv/data backup@dr-site:/srv/data

The transfer flags are sync's: compression automatic by default, -z,
--compress-level N, --compress-choice zstd|none, --bandwidth-limit/--bwlimit.`

func runRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var f syncFlags
	f.register(fs)
	rollover := fs.Duration("rollover-interval", time.Second, "longest a changelog stays open")
	change := fs.Duration("change-interval", time.Second, "longest the worker waits before looking for changelogs")
	batch := fs.Int("batch-size", 50000, "most records in one batch")
	crawlEvery := fs.Duration("crawl-interval", 10*time.Second, "crawl period when the journal is unavailable")
	statusEvery := fs.Duration("status-interval", 10*time.Second, "how often to log the lag (0 = never)")
	queue := fs.Int("journal-queue-size", 0, "fanotify queue length (testing: a tiny queue forces overflows; 0 = kernel default)")
	var tf transferFlags
	tf.register(fs)
	journalMode := fs.String("journal", "auto", "changelogs from: process (the journal process, started if none runs), inline (a journal of its own) or auto (process if one runs, else inline)")
	src, dst, err := parseSrcDst(fs, tf.oldForm(args), "run", runHelp)
	if err != nil {
		return err
	}
	if *journalMode != "auto" && *journalMode != "process" && *journalMode != "inline" {
		return cli.Usagef("--journal must be auto, process or inline")
	}
	rules, err := f.rules()
	if err != nil {
		return err
	}
	if n := tf.note(); n != "" {
		fmt.Fprintln(os.Stderr, n)
	}
	log := cli.Logger(os.Stderr, true, f.logFormat)
	stateDir := state.Dir(cli.StateDir(f.stateDir))
	dir := strings.Replace(stateDir.SyncDir(src, dst.String()), string(filepath.Separator)+"sync"+string(filepath.Separator), string(filepath.Separator)+"run"+string(filepath.Separator), 1)
	cfg := continuous.Config{
		Worker: worker.Config{Source: src, Dest: dst, SSHCommand: f.sshCommand, RemoteGeorep: f.remoteGeorep, Logger: log,
			SyncJobs: f.jobs, FakeSuper: f.fakeSuper, NoXattrs: f.noXattrs, NoACLs: f.noACLs, Excludes: rules,
			DeleteExcluded: f.deleteExcluded},
		Dir: dir, RolloverInterval: *rollover, ChangeInterval: *change, BatchSize: *batch, CrawlInterval: *crawlEvery, Logger: log,
		JournalQueueSize: *queue,
	}
	if err := tf.apply(&cfg.Worker); err != nil {
		return cli.Usagef("%v", err)
	}
	absState, err := filepath.Abs(string(stateDir))
	if err != nil {
		return err
	}
	ext := &continuous.ExternalJournal{Dir: filepath.Join(absState, "journal"), Consumer: "run-" + filepath.Base(dir)}
	switch *journalMode {
	case "process":
		ext.Start = func(ctx context.Context) error { return spawnJournal(ctx, absState) }
		cfg.Journal = ext
	case "auto":
		if _, err := (service.Client{Dir: ext.Dir}).Status(ctx); err == nil {
			cfg.Journal = ext
		}
	}
	var last time.Time
	report := func(s continuous.Status) {
		if *statusEvery > 0 && time.Since(last) >= *statusEvery {
			last = time.Now()
			log.Info("status", "state", s.State, "crawl", s.Crawl, "lag_s", s.LagSeconds, "last_synced", s.LastSynced.Format(time.RFC3339),
				"files", s.FilesSynced, "bytes", s.BytesSynced, "failures", s.Failures, "journal", s.JournalMode,
				"compression", s.Compression, "compression_ratio", s.CompressionRatio)
		}
	}
	log.Info("replicating continuously", "source", src, "destination", dst.String(), "state", dir)
	if err := continuous.Run(ctx, cfg, report); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
