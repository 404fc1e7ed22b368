// Package service owns the journal process, `georep journal`: the one
// long-lived process per state directory that holds the fanotify groups
// (one journal.Journal per filesystem) for every session root, writes their
// changelogs and keeps them until every session that reads them has applied
// them, so that workers and daemons can stop, crash, restart and be upgraded
// without a crawl. It also owns the consumer side of that contract: where a
// session's changelogs are, its position in them, and the pure decision of
// what a starting worker replays and when it must crawl instead.
//
// # Layout (STATE/journal/)
//
//	journal.sock    control socket (JSON lines; root only)
//	journal.lock    flock: one journal process per state directory
//	journal.pid     the process id, for humans and tests
//	roots.json      the registered roots and their consumers (sessions)
//	roots/<key>/    one changelog dir per root (key: hash of the canonical
//	                path): CHANGELOG.<seq>, journal.state, root.id,
//	                consumers/<session> (the last changelog it applied)
//
// Sessions with the same primary root (fan-out) share one changelog dir;
// nested roots have one each. A changelog is deleted once every consumer of
// its root has applied it (garbage collection every few seconds), or, when
// a root's changelogs pass MaxBytes (default 2 GiB), oldest first until they
// are under 90% of it: a consumer that had not applied them finds the
// sequence broken and crawls ("size limit").
//
// # Roots at run time
//
// A register request adds a consumer, and its root when new; the group of
// that filesystem is handed over in-process (journal.RunUntil then
// journal.Open with Config.Inherit) to a journal with the new root set, so
// the other roots lose no event. Unregister drops a consumer and, with the
// last one, the root.
//
// # Rollover
//
// A root's changelogs close at most the shortest rollover interval its
// consumers registered with (a session's rollover-interval; the journal
// process's --rollover-interval for roots whose consumers gave none). A
// consumer may also ask for its root's open changelog: a worker that
// connects has it written at once (and waits for it, so that its first
// batch takes the whole backlog), and a worker that has caught up asks it
// to be closed at most 200 ms after its first record, so that a change
// made while it is idle is not held to the next timed rollover.
//
// # Upgrades
//
// A reexec request (or SIGUSR2, systemd's ExecReload) hands every group
// over and exec(2)s the binary on disk with the groups' descriptors
// inherited and described in $GEOREP_JOURNAL_INHERIT: the new process
// reads what the kernel queued during the switch, and no root gets a gap.
// kill -9, on the contrary, loses the queue: the next start records a gap
// from the last vouched time and the workers crawl it.
package service
