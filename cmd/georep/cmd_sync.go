package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/state"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/worker"
	"golang.org/x/term"
)

func init() {
	register(command{name: "sync", summary: "replicate SRC to DST once: crawl, apply, exit", run: runSync})
}

const syncHelp = `Crawls the source, compares it with the secondary by file identity, and
applies the difference: entry operations (renames and hardlinks travel as
such), then data (new files whole, changed files by delta), then metadata.
Exits 0 once the secondary is in sync; non-zero, listing what failed, when
anything could not be synced. DST is a local path or [user@]host:/path.

example:
  georep sync /srv/data /backup/data
  georep sync /srv/data backup@dr-site:/srv/data --ssh-command "ssh -p 2222"
  georep sync -z --bwlimit 10M /srv/data backup@dr-site:/srv/data

Compression is automatic by default: file data is zstd-compressed when the
link is slower than the compressor, at the level that moves the most data,
and sent as is when it does not shrink (random or compressed content),
over loopback ssh, and to a local secondary. -z compresses over any remote
link; --compress-level N fixes the level; --compress-choice none or
--no-compress turns it off. The summary says what was chosen.`

type syncFlags struct {
	stateDir, sshCommand, remoteGeorep, logFormat  string
	json, noProgress, fakeSuper, noXattrs, verbose bool
	deleteExcluded, noACLs, force, checksum        bool
	jobs, passes, reconnects                       int
	excludes, excludeFrom                          cli.StringList
}

// rules returns the exclude rules of --exclude and --exclude-from.
func (f *syncFlags) rules() ([]string, error) {
	return cli.ExcludeRules(f.excludes, f.excludeFrom, os.Stdin)
}

func (f *syncFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	fs.StringVar(&f.sshCommand, "ssh-command", "", `ssh command for a remote DST, e.g. "ssh -p 2222 -i KEY" (default ssh)`)
	fs.StringVar(&f.remoteGeorep, "remote-georep", "", "georep command on the secondary host (default georep)")
	fs.BoolVar(&f.json, "json", false, "print a JSON summary at the end")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress line")
	fs.BoolVar(&f.fakeSuper, "fake-super", false, "keep owners and special files in xattrs on the secondary (automatic when it is not root)")
	fs.BoolVar(&f.fakeSuper, "no-owner", false, "alias of --fake-super: do not chown on the secondary, store owners in xattrs")
	fs.BoolVar(&f.noXattrs, "no-xattrs", false, "do not sync xattrs and ACLs")
	fs.BoolVar(&f.noACLs, "no-acls", false, "do not sync POSIX ACLs: the secondary's files are left without them")
	fs.BoolVar(&f.verbose, "v", false, "log progress details to stderr")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.jobs, "sync-jobs", 0, "files transferred in parallel (default fitted to the machine)")
	fs.IntVar(&f.passes, "passes", 3, "crawl passes before giving up on failing entries")
	fs.IntVar(&f.reconnects, "reconnects", 20, "connection attempts (with exponential backoff) before giving up")
	fs.Var(&f.excludes, "exclude", "rsync exclude `PATTERN` (repeatable): /x anchors at the root, x/ matches directories only, * ? [...] within a name, ** across names")
	fs.Var(&f.excludeFrom, "exclude-from", "read exclude patterns from `FILE`, one a line (# and ; start comments; - is stdin)")
	fs.BoolVar(&f.deleteExcluded, "delete-excluded", false, "also delete from the secondary what the excludes match (by default it is kept)")
	fs.BoolVar(&f.force, "force", false, "accept a secondary that holds another primary's replica (its content is adopted by path)")
	fs.BoolVar(&f.checksum, "checksum", false, "compare the content of files whose size and mtime match (rsync -c), repairing drift on the secondary")
}

// syncSummary is the --json output.
type syncSummary struct {
	Source      string           `json:"source"`
	Destination string           `json:"destination"`
	OK          bool             `json:"ok"`
	Passes      int              `json:"passes"`
	Seconds     float64          `json:"seconds"`
	Stime       int64            `json:"stime_ns"`
	Stats       worker.Stats     `json:"stats"`
	Failures    []worker.Failure `json:"failures,omitempty"`
	Error       string           `json:"error,omitempty"`
}

func runSync(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	var f syncFlags
	f.register(fs)
	var tf transferFlags
	tf.register(fs)
	src, dst, err := parseSrcDst(fs, tf.oldForm(args), "sync", syncHelp)
	if err != nil {
		return err
	}
	rules, err := f.rules()
	if err != nil {
		return err
	}
	if n := tf.note(); n != "" {
		fmt.Fprintln(os.Stderr, n)
	}
	log := cli.Logger(os.Stderr, f.verbose, f.logFormat)
	stateDir := state.Dir(cli.StateDir(f.stateDir))
	recDir := stateDir.SyncDir(src, dst.String())
	if err := os.MkdirAll(recDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	var progress func(worker.Progress)
	if !f.json && !f.noProgress && term.IsTerminal(int(os.Stderr.Fd())) {
		progress = printProgress
	}
	absState, _ := filepath.Abs(string(stateDir))
	cfg := worker.Config{Source: src, Dest: dst, SSHCommand: f.sshCommand, RemoteGeorep: f.remoteGeorep, Logger: log,
		SyncJobs: f.jobs, FakeSuper: f.fakeSuper, NoXattrs: f.noXattrs, NoACLs: f.noACLs, Excludes: rules,
		DeleteExcluded: f.deleteExcluded, ExcludePaths: []string{absState}, Progress: progress, Force: f.force, Checksum: f.checksum, TrackSuspects: true,
		// Over a network the last syncfs runs on the secondary after the
		// sync returns; its stime is recorded only once that is done.
		DeferDurability: dst.Host != "", PrefetchWalk: true}
	if err := tf.apply(&cfg); err != nil {
		return cli.Usagef("%v", err)
	}
	// Files the last run read too soon after a change go again.
	suspectPath := filepath.Join(recDir, "suspects.json")
	if b, err := os.ReadFile(suspectPath); err == nil {
		if err := json.Unmarshal(b, &cfg.Suspects); err != nil {
			log.Warn("unreadable list of recently changed files; ignored", "path", suspectPath, "err", err)
		}
	}
	started := time.Now()
	sum := syncSummary{Source: src, Destination: dst.String()}
	var stime int64
	var runErr error
	// A dropped link or a killed agent is not the end: reconnect with
	// exponential backoff and resume (the crawl finds what is left).
	backoff := 250 * time.Millisecond
	var prevErr error
	for attempt := 1; ; attempt++ {
		var part syncSummary
		stime, runErr = syncOnce(ctx, cfg, recDir, f.passes, &part)
		sum.Passes += part.Passes
		sum.Stats = addStats(sum.Stats, part.Stats)
		sum.Failures = part.Failures
		if runErr == nil || !worker.IsConnectionError(runErr) || ctx.Err() != nil ||
			!transport.RetryAfterConnectFailure(prevErr, runErr) {
			break
		}
		prevErr = runErr
		if attempt >= f.reconnects {
			runErr = fmt.Errorf("gave up after %d connection attempts; the secondary stayed unreachable (last error: %w)", attempt, runErr)
			break
		}
		log.Warn("connection to the secondary lost; reconnecting", "attempt", attempt, "in", backoff, "err", runErr)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	sum.Seconds = time.Since(started).Seconds()
	sum.Stime = stime
	sum.OK = runErr == nil
	if runErr != nil {
		sum.Error = runErr.Error()
	}
	if progress != nil {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	if f.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum)
	} else if runErr == nil {
		st := sum.Stats
		fmt.Printf("georep sync %s -> %s: %d entry ops (%d renames), %d files (%s) sent, %d metadata, %d failures, %s on the wire (compression %s, %.2fx), %.2fs\n",
			src, dst, st.Entries, st.Renames, st.DataFiles, status.HumanBytes(st.DataBytes), st.Metadata, len(sum.Failures),
			status.HumanBytes(st.BytesSent+st.BytesRecv), st.Compression, st.CompressionRatio, sum.Seconds)
		if st.FakeSuper {
			fmt.Println("note: the secondary stored owners, groups and device files in user.georep.stat xattrs (fake-super); 'georep verify --fake-super' reads them")
		}
	} else {
		// A failed sync prints no summary that could pass for success:
		// what failed on stdout, why on stderr.
		for i, fl := range sum.Failures {
			if i == 50 {
				fmt.Printf("... and %d more (see %s)\n", len(sum.Failures)-50, filepath.Join(recDir, "failures.json"))
				break
			}
			fmt.Printf("FAILED %s %q (id %s): %s\n", fl.Op, fl.Path, fl.ID.Short(), fl.Error)
		}
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "georep sync: %v\n", runErr) // with --json too: stdout stays the summary
		return errExit1
	}
	return nil
}

// syncOnce runs crawl passes until the secondary is in sync or the passes
// are used up; it records the stime on both sides only after a clean pass.
func syncOnce(ctx context.Context, cfg worker.Config, recDir string, passes int, sum *syncSummary) (int64, error) {
	sess, err := worker.Connect(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	defer func() { sum.Stats = sess.Stats(); sum.Failures = sum.Stats.FailureList; sum.Stats.FailureList = nil }()
	primStime, corrupt, err := state.ReadStimeLenient(filepath.Join(recDir, "stime"))
	if err != nil {
		return 0, err
	}
	if corrupt {
		cfg.Logger.Warn("this sync's stime record is unreadable (a crash while it was written?); taking the secondary's", "path", filepath.Join(recDir, "stime"))
	}
	// The older of the two records; none when the secondary has none (a
	// new or lost index: nothing there is covered).
	stime := sess.Hello.Stime
	if stime != 0 && primStime != 0 && primStime < stime {
		stime = primStime
	}
	if passes < 1 {
		passes = 1
	}
	// Metadata switched on since the last sync (xattrs, ACLs) is re-sent
	// for every file, not only for those changed since the stime.
	metaPath := filepath.Join(recDir, worker.MetaOptionsFile)
	rec, known, err := worker.ReadMetaOptions(metaPath)
	if err != nil {
		cfg.Logger.Warn("unreadable record of the synced metadata options; re-sending every file's metadata", "err", err)
		known, rec = true, worker.MetaOptions{}
	}
	crawlStime := worker.MetaCrawlStime(stime, rec, known, cfg.MetaOptions())
	for pass := 1; pass <= passes; pass++ {
		sum.Passes = pass
		sess.ResetFailures()
		start := time.Now().UnixNano()
		job, err := sess.Crawl(ctx, crawlStime)
		if err != nil {
			return stime, err
		}
		start = min(start, job.WalkStarted) // the first walk began before the connection
		cfg.Logger.Info("crawl done", "pass", pass, "job", job.String(), "adopted", job.Adoptions())
		// Keep what the crawl found as a changelog ('georep changelog dump'),
		// written beside the transfer rather than before it.
		// Execute only reads the job (it copies the entries it sends).
		kept := make(chan struct{})
		go func() {
			defer close(kept)
			t0 := time.Now()
			if recs := job.Records(); len(recs) > 0 {
				clPath := filepath.Join(recDir, "crawl.changelog")
				if err := changelog.WriteFile(clPath, changelog.Header{Seq: uint64(pass), Start: start, Source: changelog.SourceCrawl}, recs, time.Now().UnixNano()); err != nil {
					cfg.Logger.Warn("could not keep the crawl's changelog", "err", err)
				}
			}
			cfg.Logger.Debug("crawl changelog kept", "took", time.Since(t0).Round(time.Millisecond))
		}()
		err = sess.Execute(ctx, job)
		<-kept
		if err == nil {
			if err := sess.CommitStime(ctx, start); err != nil {
				return stime, err
			}
			if err := state.WriteStimeLazy(filepath.Join(recDir, "stime"), start); err != nil {
				return start, fmt.Errorf("record stime: %w", err)
			}
			os.Remove(filepath.Join(recDir, "failures.json"))
			if err := worker.WriteMetaOptions(metaPath, cfg.MetaOptions()); err != nil {
				cfg.Logger.Warn("could not record the synced metadata options", "err", err)
			}
			if sus := sess.Suspects(); len(sus) > 0 {
				if err := state.WriteJSON(filepath.Join(recDir, "suspects.json"), sus); err != nil {
					return start, fmt.Errorf("record the recently changed files: %w", err)
				}
			} else {
				os.Remove(filepath.Join(recDir, "suspects.json"))
			}
			return start, nil
		}
		if !worker.IsFailures(err) {
			return stime, err
		}
		cfg.Logger.Warn("some entries failed; crawling again", "pass", pass, "err", err)
	}
	st := sess.Stats()
	state.WriteJSON(filepath.Join(recDir, "failures.json"), st.FailureList)
	return stime, fmt.Errorf("%d entries could not be synced after %d passes", st.Failures, passes)
}

// printProgress draws the progress line: files and bytes the secondary
// answered for, the rate since the transfer began and the ETA it gives.
func printProgress(p worker.Progress) {
	fmt.Fprint(os.Stderr, "\r\033[K"+progressLine(p))
}

func progressLine(p worker.Progress) string {
	rate := float64(p.Settled) / max(p.Elapsed.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && p.TotalBytes > p.Settled {
		eta = status.ETA(p.TotalBytes-p.Settled, rate).Round(time.Second).String()
	} else if p.TotalBytes <= p.Settled {
		eta = "0s"
	}
	return fmt.Sprintf("%d/%d files  %s/%s  %s/s  ETA %s", p.Files, p.TotalFiles, status.HumanBytes(p.Settled), status.HumanBytes(p.TotalBytes), status.HumanBytes(int64(rate)), eta)
}

func version() string { return worker.Version }

func addStats(a, b worker.Stats) worker.Stats {
	a.Entries += b.Entries
	a.DataFiles += b.DataFiles
	a.DataBytes += b.DataBytes
	a.DeltaFiles += b.DeltaFiles
	a.Metadata += b.Metadata
	a.Failures = b.Failures
	a.BytesSent += b.BytesSent
	a.BytesRecv += b.BytesRecv
	a.Renames += b.Renames
	a.Creates += b.Creates
	a.Deletes += b.Deletes
	a.FakeSuper = b.FakeSuper
	if b.Compression != "" {
		a.Compression, a.CompressionRatio = b.Compression, b.CompressionRatio
	}
	return a
}

// parseSrcDst parses a SRC DST verb's arguments: flags anywhere, then the
// source made absolute and the destination parsed. help is printed for -h.
func parseSrcDst(fs *flag.FlagSet, args []string, verb, help string) (string, transport.Destination, error) {
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep "+verb+" SRC DST [flags]", help)
		}
		return "", transport.Destination{}, err
	}
	if err := cli.WantSrcDst(pos); err != nil {
		return "", transport.Destination{}, cli.Usagef("%v (see georep %s --help)", err, verb)
	}
	src, err := filepath.Abs(pos[0])
	if err != nil {
		return "", transport.Destination{}, err
	}
	dst, err := transport.ParseDestination(pos[1])
	if err != nil {
		return "", transport.Destination{}, cli.Usagef("%v", err)
	}
	return src, dst, nil
}
