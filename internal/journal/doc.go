// Package journal owns the live change journal on the primary: one fanotify
// group with a filesystem mark (FAN_REPORT_FID | FAN_REPORT_DFID_NAME |
// FAN_REPORT_TARGET_FID) on the filesystem that holds the session roots,
// whose events it filters to those roots, turns into changelog records and
// writes, window by window, as changelog files — one directory of numbered
// CHANGELOG.<seq> files per root — together with a small state file
// (journal.state) that says up to when the journal vouches for the
// filesystem. It also owns the gap markers (G records) that tell the worker
// to crawl what the journal could not see: the time before it started and
// queue overflows.
//
// # Pipeline
//
// A reader goroutine drains the fanotify descriptor (non-blocking, waited
// on with poll(2) rather than the runtime's epoll, and read about once a
// millisecond so that events come by the hundred) into 256 KiB buffers and
// hands them over a generous channel (up to 64 MiB of raw events) to the
// processing goroutine. Notification events never block the filesystem;
// what a slow consumer risks is a queue overflow, which is recorded as a
// gap, and the reader keeps draining while the processor waits on fsync.
//
// The processor parses events, decides for each event's directory whether it
// lies in a root (a cache of directory ID -> roots, filled by
// open_by_handle_at + readlink of /proc/self/fd and a component-wise prefix
// check; the whole cache is dropped on any directory rename and on overflow,
// single entries on rmdir), and appends records to the current window of
// every root that contains the event.
//
// # Records
//
//	FAN_CREATE             E CREATE (E MKDIR for a directory): ID = child, Parent/Name = slot
//	FAN_DELETE             E UNLINK (E RMDIR)
//	FAN_RENAME             E RENAME old slot -> new slot; only the new side in the root:
//	                       CREATE/MKDIR there; only the old side: UNLINK/RMDIR there
//	FAN_MODIFY, CLOSE_WRITE D ID with the slot hint, once per ID per changelog
//	FAN_ATTRIB             M ID (slot hint for non-directories), once per ID per changelog;
//	                       on a directory (the root included) without a hint
//	FAN_Q_OVERFLOW         G [last time the queue was seen empty, time of the read]
//	start                  G [previous vouched end or 0, time the mark was placed]
//
// Entry records keep the kernel's order. The kernel merges identical queued
// events of one process on one slot, so a CREATE and an UNLINK of the same
// (parent, name, id) may arrive as one event: both records are written,
// CREATE first. The worker must therefore treat entry records as hints about
// slots and reconcile each named slot with the live tree; that is also what
// makes a spurious record harmless.
//
// # What the worker must know
//
//   - CREATE stands for every way a non-directory name appears: create,
//     mknod, symlink, link (a CREATE whose ID the secondary already has
//     under another name is a hard link) and a rename from outside the
//     roots. MKDIR likewise covers a directory moved in from outside, whose
//     subtree must then be crawled: its contents produced no events here.
//   - An UNLINK/RMDIR may stand for a move out of the root. RMDIR may come
//     without UNLINKs of the directory's contents when the directory was
//     gone before the journal resolved it: delete recursively.
//   - A RENAME onto an existing name replaces it; the replaced file gets no
//     UNLINK record.
//   - Names are the kernel's bytes (any byte but '/' and NUL; not UTF-8
//     checked); IDs equal fileid.OfPath of the same file.
//   - D and M records are deduplicated per changelog (the first occurrence
//     stays, with the slot hint of that moment); D is not emitted for
//     directories, M is (without a hint; the root's M never has one).
//   - A G record means "crawl [From, To]": the journal lost or never saw
//     events then (start, restart, overflow, unparsable events, changelog
//     writes failing for long). File timestamps are coarse: compare ctimes
//     with some slack. Every root's first changelog after Open has one.
//   - Records of one root keep the kernel's event order (modulo the merge
//     above); changelog sequence numbers only grow, also across restarts
//     and after the worker deleted the files (journal.state keeps the last).
//
// # Windows and durability
//
// Records accumulate per root in memory; a window is written (changelog
// WriteFile: temp file, fsync, rename, fsync dir) when RolloverInterval has
// passed since its first record, QuietInterval since its last record, or it
// holds maxWindowRecords records. An empty window writes nothing. After each
// file the root's journal.state is rewritten with the vouched time: every
// filesystem event before it is in a durable changelog of that root (or did
// not concern the root). A restart writes a gap from that time. An idle
// root's state follows the watermark (rewritten when it moved by a second),
// so that readers in other processes can advance their stime on an idle
// tree; State.Since says since when the root is covered without a gap.
//
// # Hand-off
//
// RunUntil can end in a hand-off instead of a stop: the reader drains the
// queue until it is found empty at a time T, the last windows are written
// and every root's state is marked clean with End >= T, and the fanotify
// group is returned (Inherited) rather than closed. A successor — Open with
// Config.Inherit, in this process with another root set or after an exec —
// reads the same kernel queue: every event after T is still there. Its roots
// start without a gap exactly when their state is clean and vouches T
// (gapNeeded); a new root, or one whose state is older or unclean (a kill
// -9), starts with one.
package journal
