package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/journal/service"
)

// The daemon's side of the journal process: workers read its changelogs
// (continuous.ExternalJournal); the daemon starts it when none answers —
// at a worker's start and, while sessions run, when it died (a kill -9:
// the new one records the gap and the workers crawl it) — and drops the
// consumers of deleted sessions.

// runConsumerPrefix starts the consumer names of `georep run` (not the
// daemon's sessions: never pruned by it).
const runConsumerPrefix = "run-"

// journalCheckInterval is how often the daemon makes sure the journal
// process answers while workers run.
const journalCheckInterval = 2 * time.Second

type journalLink struct {
	d      *Daemon
	client service.Client
	mu     sync.Mutex // one start at a time
}

func (d *Daemon) journalDir() string { return filepath.Join(d.absState, "journal") }

// external is what a worker of session name reads, or nil without a
// journal process (Options.StartJournal unset).
func (d *Daemon) external(name string) *continuous.ExternalJournal {
	if d.jl == nil {
		return nil
	}
	return &continuous.ExternalJournal{Dir: d.jl.client.Dir, Consumer: name, Start: d.jl.ensure}
}

// ensure starts the journal process unless one answers.
func (jl *journalLink) ensure(ctx context.Context) error {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	if _, err := jl.client.Status(ctx); err == nil {
		return nil
	}
	jl.d.log.Info("starting the journal process", "dir", jl.client.Dir)
	return jl.d.opts.StartJournal(ctx)
}

// watch keeps the journal process up while sessions run, and once drops
// consumers the journal knows and the daemon does not.
func (jl *journalLink) watch(ctx context.Context) {
	tick := time.NewTicker(journalCheckInterval)
	defer tick.Stop()
	pruned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		running := false
		for _, rt := range jl.d.runtimes() {
			running = running || rt.running()
		}
		st, err := jl.client.Status(ctx)
		if errors.Is(err, service.ErrNotRunning) && running {
			jl.d.log.Warn("the journal process is gone; starting it again (its workers will crawl the gap)")
			if err := jl.ensure(ctx); err != nil {
				jl.d.log.Error("cannot start the journal process", "err", err)
			}
			continue
		}
		if err != nil || pruned {
			continue
		}
		pruned = true
		known := map[string]bool{}
		for _, rt := range jl.d.runtimes() {
			known[rt.name] = true
		}
		for _, r := range st.Roots {
			for _, c := range r.Consumers {
				if !known[c] && !strings.HasPrefix(c, runConsumerPrefix) {
					jl.d.log.Info("dropping the journal consumer of a deleted session", "session", c, "root", r.Path)
					if err := jl.client.Unregister(ctx, c, r.Path); err != nil {
						jl.d.log.Warn("journal unregister", "session", c, "err", err)
					}
				}
			}
		}
	}
}

// forget drops a deleted session's consumer (its changelogs go with it).
func (jl *journalLink) forget(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := jl.client.Unregister(ctx, name, ""); err != nil && !errors.Is(err, service.ErrNotRunning) {
		jl.d.log.Warn("journal unregister", "session", name, "err", err)
	}
}
