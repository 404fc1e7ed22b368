package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
)

func init() {
	register(command{name: "checkpoint", summary: "set a checkpoint, or see (or wait) until the secondary has everything up to it", run: runCheckpoint})
}

const checkpointHelp = `A checkpoint is a point in time; it is completed once the session's stime
passes it: the secondary then holds everything the primary had at that
time. The completion time is when the daemon noticed. On an idle tree the
stime still advances (to the journal's watermark), so a checkpoint completes
without a change being needed.

  georep checkpoint set NAME [now|TIME]      TIME: RFC 3339 or "YYYY-MM-DD HH:MM:SS" (local)
  georep checkpoint status NAME [--wait] [--timeout D] [--json]
      --wait blocks until completed (exit 0) or the timeout (exit 1).
  georep checkpoint reset NAME               remove the checkpoint

example:
  georep checkpoint set backup now && georep checkpoint status backup --wait --timeout 1h`

func runCheckpoint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("checkpoint", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	wait := fs.Bool("wait", false, "status: wait until the checkpoint completes")
	timeout := fs.Duration("timeout", 0, "status --wait: give up after this long (0 = never)")
	asJSON := fs.Bool("json", false, "status: JSON output")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep checkpoint set|status|reset NAME ...", checkpointHelp)
		}
		return err
	}
	if len(pos) < 2 {
		return cli.Usagef("usage: georep checkpoint set NAME [now|TIME] | status NAME [--wait] | reset NAME")
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	sub, name := pos[0], pos[1]
	switch sub {
	case "set", "reset":
		var cp time.Time
		if sub == "set" {
			if cp, err = session.ParseCheckpoint(strings.Join(pos[2:], " "), time.Now()); err != nil {
				return cli.Usagef("%v", err)
			}
		} else if len(pos) > 2 {
			return cli.Usagef("usage: georep checkpoint reset NAME")
		}
		if _, err := store.Update(name, func(s *session.Session) error {
			s.Checkpoint = cp
			s.CheckpointSetAt = time.Time{}
			if !cp.IsZero() {
				s.CheckpointSetAt = time.Now()
			}
			return nil
		}); err != nil {
			return err
		}
		_, live, err := notifyDaemon(ctx, store, name)
		if err != nil {
			return fmt.Errorf("checkpoint recorded, but the daemon failed to apply it: %w", err)
		}
		if sub == "reset" {
			fmt.Printf("checkpoint of %s removed\n", name)
			return nil
		}
		fmt.Printf("checkpoint of %s set to %s\n", name, cp.Format("2006-01-02 15:04:05 MST"))
		if !live {
			noDaemonNote("it is watched")
		}
		return nil
	case "status":
		if len(pos) != 2 {
			return cli.Usagef("usage: georep checkpoint status NAME [--wait] [--timeout D]")
		}
		return checkpointStatus(ctx, store, name, *wait, *timeout, *asJSON)
	}
	return cli.Usagef("unknown subcommand %q (set, status, reset)", sub)
}

func checkpointStatus(ctx context.Context, store session.Store, name string, wait bool, timeout time.Duration, asJSON bool) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		reports, err := sessionReports(ctx, store, name)
		if err != nil {
			return err
		}
		if len(reports) != 1 {
			return fmt.Errorf("no such session %q", name)
		}
		r := reports[0]
		if r.CheckpointTime == nil {
			return fmt.Errorf("session %s has no checkpoint (georep checkpoint set %s now)", name, name)
		}
		if r.CheckpointCompleted || !wait {
			return printCheckpoint(r, asJSON)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			if asJSON {
				printCheckpoint(r, true)
			}
			fmt.Fprintf(os.Stderr, "georep checkpoint: checkpoint %s of %s not completed after %s (status %s, last synced %s, lag %s)\n",
				status.FormatTime(r.CheckpointTime), name, timeout, r.Status, status.FormatTime(r.LastSynced), status.FormatLag(r.LagSeconds))
			return errExit1
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: checkpoint not completed")
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printCheckpoint(r status.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"session": r.Session, "checkpoint_time": r.CheckpointTime, "checkpoint_completed": r.CheckpointCompleted,
			"checkpoint_completion_time": r.CheckpointCompletionTime, "last_synced": r.LastSynced, "status": r.Status})
	}
	if r.CheckpointCompleted {
		when := status.FormatTime(r.CheckpointCompletionTime)
		if r.CheckpointCompletionTime == nil {
			when = "unknown (completed while no daemon watched)"
		}
		fmt.Printf("checkpoint %s of %s: completed at %s (last synced %s)\n", status.FormatTime(r.CheckpointTime), r.Session, when, status.FormatTime(r.LastSynced))
		return nil
	}
	fmt.Printf("checkpoint %s of %s: not completed (status %s, last synced %s, lag %s)\n", status.FormatTime(r.CheckpointTime), r.Session, r.Status,
		status.FormatTime(r.LastSynced), status.FormatLag(r.LagSeconds))
	return nil
}
