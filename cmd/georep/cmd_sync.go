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
  georep sync /srv/data backup@dr-site:/srv/data --ssh-command "ssh -p 2222"`

type syncFlags struct {
	stateDir, sshCommand, remoteGeorep, logFormat  string
	json, noProgress, fakeSuper, noXattrs, verbose bool
	force, checksum                                bool
	jobs, passes, reconnects                       int
	excludes                                       cli.StringList
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
	fs.BoolVar(&f.verbose, "v", false, "log progress details to stderr")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.jobs, "sync-jobs", 0, "files transferred in parallel (default fitted to the machine)")
	fs.IntVar(&f.passes, "passes", 3, "crawl passes before giving up on failing entries")
	fs.IntVar(&f.reconnects, "reconnects", 20, "connection attempts (with exponential backoff) before giving up")
	fs.Var(&f.excludes, "exclude", "top-level name not to replicate (repeatable)")
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
	src, dst, err := parseSrcDst(fs, args, "sync", syncHelp)
	if err != nil {
		return err
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
		SyncJobs: f.jobs, FakeSuper: f.fakeSuper, NoXattrs: f.noXattrs, Excludes: f.excludes,
		ExcludePaths: []string{absState}, Progress: progress, Force: f.force, Checksum: f.checksum, TrackSuspects: true,
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
	for attempt := 1; ; attempt++ {
		var part syncSummary
		stime, runErr = syncOnce(ctx, cfg, recDir, f.passes, &part)
		sum.Passes += part.Passes
		sum.Stats = addStats(sum.Stats, part.Stats)
		sum.Failures = part.Failures
		if runErr == nil || !worker.IsConnectionError(runErr) || ctx.Err() != nil {
			break
		}
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
	} else {
		st := sum.Stats
		fmt.Printf("georep sync %s -> %s: %d entry ops (%d renames), %d files (%s) sent, %d metadata, %d failures, %s on the wire, %.2fs\n",
			src, dst, st.Entries, st.Renames, st.DataFiles, status.HumanBytes(st.DataBytes), st.Metadata, len(sum.Failures),
			status.HumanBytes(st.BytesSent+st.BytesRecv), sum.Seconds)
		if st.FakeSuper {
			fmt.Println("note: the secondary stored owners, groups and device files in user.georep.stat xattrs (fake-super); 'georep verify --fake-super' reads them")
		}
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
	for pass := 1; pass <= passes; pass++ {
		sum.Passes = pass
		sess.ResetFailures()
		start := time.Now().UnixNano()
		job, err := sess.Crawl(ctx, stime)
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

func printProgress(p worker.Progress) {
	rate := float64(p.Bytes) / max(p.Elapsed.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && p.TotalBytes > p.Bytes {
		eta = (time.Duration(float64(p.TotalBytes-p.Bytes)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(os.Stderr, "\r\033[K%d/%d files  %s/%s  %s/s  ETA %s", p.Files, p.TotalFiles, status.HumanBytes(p.Bytes), status.HumanBytes(p.TotalBytes), status.HumanBytes(int64(rate)), eta)
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
	if len(pos) != 2 {
		return "", transport.Destination{}, cli.Usagef("need SRC and DST (see georep %s --help)", verb)
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
