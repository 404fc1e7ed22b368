// Package worker owns the primary side of replication: it connects to a
// secondary agent, turns a crawl or a batch of changelogs into a plan
// (internal/plan), and applies it in order — entry operations, then data
// (new files whole, changed files by delta, read by file handle), then
// metadata — and records the stime on both sides only after everything
// succeeded. What still fails after retries is listed by ID and path,
// counted and reported, never dropped silently.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/georep/georep/internal/compression"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/filter"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/scan"
	"github.com/georep/georep/internal/transport"
	"golang.org/x/sys/unix"
)

// Version is georep's version, sent in the handshake.
var Version = "0.1.0"

// Config describes a replication session.
type Config struct {
	Source     string
	Dest       transport.Destination
	SSHCommand string
	Logger     *slog.Logger
	// SyncJobs is the number of files transferred in parallel.
	SyncJobs int
	// FakeSuper asks the secondary to keep owners and special files in
	// xattrs (for a non-root secondary; it also switches itself on).
	FakeSuper bool
	// NoXattrs skips xattrs and ACLs.
	NoXattrs bool
	// NoACLs skips POSIX ACLs (system.posix_acl_*): the secondary's
	// files are left without them.
	NoACLs bool
	// Excludes are rsync exclude rules (internal/filter): what they match
	// is not replicated, and what the secondary already holds there is
	// kept, unless DeleteExcluded.
	Excludes []string
	// DeleteExcluded removes from the secondary what Excludes match
	// (rsync --delete-excluded).
	DeleteExcluded bool
	// ExcludePaths are absolute paths not replicated (the state dir).
	ExcludePaths []string
	// ReadOnly opens a session that only reads the secondary (verify).
	ReadOnly bool
	// Force accepts a secondary that holds another primary's replica.
	Force bool
	// Check only asks whether the secondary would accept the session
	// (session create): the agent creates, locks and resets nothing.
	Check bool
	// Checksum compares the content of files whose size and mtime match
	// (rsync -c): drift on the secondary that kept both is repaired.
	Checksum bool
	// Suspects are files an earlier sync read too soon after a change
	// (Session.Suspects): their content is compared by hash.
	Suspects []fileid.ID
	// TrackSuspects records the files read too soon after a change, for
	// Session.Suspects (one-shot syncs; continuous mode gets their D
	// records from the journal instead).
	TrackSuspects bool
	// RemoteGeorep is the georep command on the secondary host.
	RemoteGeorep string
	// Progress, when set, is called about every 200 ms during data transfer.
	Progress func(Progress)
	// Stderr receives the remote agent's stderr.
	Stderr io.Writer
	// Compression of file data on the wire, as compression.Parse reads
	// it: "auto" (or "", the default: on when it pays, at the level the
	// link calls for; never for a local secondary), "none", "zstd"
	// (always, level chosen by the link) or "zstd:1".."zstd:4" (fixed).
	Compression string
	// BandwidthLimit caps the bytes per second written to the secondary
	// (0 = no limit).
	BandwidthLimit int64
	// DeferDurability (one-shot syncs to a remote secondary): CommitStime
	// returns once everything is applied, and the secondary makes it
	// durable (syncfs) after the session and records its stime only then,
	// so its stime stays the durable point a later session resumes from.
	// Without it, CommitStime waits for the syncfs.
	DeferDurability bool
	// PrefetchWalk starts the walk of the primary before the connection
	// is made, for the first Crawl (a sync's): the walk overlaps the ssh
	// handshake.
	PrefetchWalk bool
}

// Session is a live connection to a secondary for one source tree.
type Session struct {
	cfg    Config
	log    *slog.Logger
	rwc    io.ReadWriteCloser
	conn   *protocol.Conn
	opener *fileid.Opener
	filter *filter.Filter // cfg.Excludes
	srcFD  int
	fsid   fileid.FSID
	rootID fileid.ID
	Hello  *protocol.HelloOK

	// suspect collects the files read too soon after a change (racy.go).
	suspect suspects

	// prefetched is the walk started by Connect (PrefetchWalk), taken by
	// the first Crawl; prefetchStarted is when it began.
	prefetched      <-chan walkRes
	prefetchStarted int64
	// earlyList is the first crawl's listing, asked for with the
	// handshake (PrefetchWalk).
	earlyList listWait
	// committed: the secondary acknowledged a StimeSet in this session.
	committed bool

	// comp chooses the compression of each data message; meter measures
	// the stream to the secondary for it.
	comp  *compression.Controller
	meter *compression.Meter
	// firstProbe is closed once the first probe of the link is answered
	// (or probeWait passed); nil for a local secondary.
	firstProbe chan struct{}

	stats   Stats
	statsMu sync.Mutex
	stream  uint64
	streamM sync.Mutex
}

// Stats counts what a session did.
type Stats struct {
	Entries    int   `json:"entries"`
	DataFiles  int   `json:"data_files"`
	DataBytes  int64 `json:"data_bytes"`
	DeltaFiles int   `json:"delta_files"`
	Metadata   int   `json:"metadata"`
	Failures   int   `json:"failures"`
	BytesSent  int64 `json:"bytes_sent"`
	BytesRecv  int64 `json:"bytes_received"`
	Renames    int   `json:"renames"`
	Creates    int   `json:"creates"`
	Deletes    int   `json:"deletes"`
	FakeSuper  bool  `json:"fake_super"`
	// Compression is what the compression controller chose for most of
	// the data and why, e.g. "zstd:3 (link-bound)"; CompressionRatio the
	// data's size over its size on the wire (1 = not compressed).
	Compression      string    `json:"compression"`
	CompressionRatio float64   `json:"compression_ratio"`
	FailureList      []Failure `json:"failure_list,omitempty"`
}

// Failure is one thing that could not be synced.
type Failure struct {
	ID    fileid.ID `json:"id"`
	Path  string    `json:"path"`
	Op    string    `json:"op"`
	Error string    `json:"error"`
	Errno uint32    `json:"errno,omitempty"`
}

// Progress is a snapshot for a progress line.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
	// Settled is the size of the files done (of TotalBytes), counted when
	// the secondary answered for them: the base of a rate and an ETA.
	// Bytes counts what was read for sending, ahead of the answers.
	Settled int64
	Elapsed time.Duration
}

// Connect opens the source and reaches the secondary.
func Connect(ctx context.Context, cfg Config) (*Session, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.SyncJobs <= 0 {
		cfg.SyncJobs = max(4, 2*runtime.NumCPU())
	}
	src, err := filepath.Abs(cfg.Source)
	if err != nil {
		return nil, err
	}
	cfg.Source = src
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", src)
	}
	if cfg.Dest.Host == "" {
		if rel, err := filepath.Rel(src, cfg.Dest.Path); err == nil && (rel == "." || !startsWithDotDot(rel)) {
			return nil, fmt.Errorf("destination %s lies inside the source %s", cfg.Dest.Path, src)
		}
		if rel, err := filepath.Rel(cfg.Dest.Path, src); err == nil && (rel == "." || !startsWithDotDot(rel)) {
			return nil, fmt.Errorf("source %s lies inside the destination %s", src, cfg.Dest.Path)
		}
	}
	flt, err := filter.New(cfg.Excludes)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open source %s: %w", src, err)
	}
	setting, err := compression.Parse(cfg.Compression)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &Session{cfg: cfg, log: log, srcFD: fd, filter: flt}
	link := compression.Remote
	if cfg.Dest.Host == "" {
		link = compression.Local
	}
	s.meter = &compression.Meter{}
	s.comp = compression.NewController(setting, link, cfg.SyncJobs, s.meter)
	s.comp.OnChange = func(ch compression.Choice, in compression.Inputs) {
		log.Debug("compression", "level", ch.Level.String(), "why", ch.Reason.String(), "wire_MBps", in.WireRate/1e6, "busy", in.WireBusy,
			"est", fmt.Sprintf("%.0f/%.3f %.0f/%.3f %.0f/%.3f %.0f/%.3f", in.Levels[1].Rate/1e6, in.Levels[1].Ratio, in.Levels[2].Rate/1e6, in.Levels[2].Ratio,
				in.Levels[3].Rate/1e6, in.Levels[3].Ratio, in.Levels[4].Rate/1e6, in.Levels[4].Ratio))
	}
	if s.fsid, err = fileid.FSIDOf(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if s.rootID, err = fileid.Of(s.fsid, fd, ""); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("source %s: file handles are not supported here: %w", src, err)
	}
	if s.opener, err = fileid.NewOpener(src); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if !s.opener.Available() {
		log.Info("opening files by handle is not permitted (needs CAP_DAC_READ_SEARCH); reading by path")
	}
	if cfg.PrefetchWalk {
		s.prefetchStarted = time.Now().UnixNano()
		s.prefetched = s.startWalk(ctx)
	}
	dialStart := time.Now()
	s.rwc, err = transport.Dial(ctx, cfg.Dest, transport.Options{SSHCommand: cfg.SSHCommand, RemoteGeorep: cfg.RemoteGeorep,
		Software: Version, Logger: log.With("side", "secondary"), FakeSuper: cfg.FakeSuper, Stderr: cfg.Stderr,
		BandwidthLimit: cfg.BandwidthLimit})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.conn = protocol.NewConn(compression.Metered(s.rwc, s.meter))
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var listFirst func() error
	if cfg.PrefetchWalk {
		// The first crawl's listing travels right behind the handshake.
		listFirst = func() (err error) {
			s.earlyList, err = s.startList()
			return err
		}
	}
	m, err := s.conn.CallThen(hctx, &protocol.Hello{Version: protocol.Version, Software: Version, RootID: s.rootID, Session: src, FakeSuper: cfg.FakeSuper, ReadOnly: cfg.ReadOnly,
		DeferDurability: cfg.DeferDurability, Force: cfg.Force, Check: cfg.Check}, listFirst)
	if err != nil {
		if errors.Is(err, protocol.ErrClosed) && cfg.Dest.Host != "" {
			// ssh ended before the agent answered: say why, in ssh's words.
			cause := transport.Cause(ctx, s.rwc, 5*time.Second)
			s.Close()
			if cause != nil {
				return nil, fmt.Errorf("secondary %s: %w", cfg.Dest, cause)
			}
			return nil, fmt.Errorf("secondary %s did not answer the handshake: %w", cfg.Dest, err)
		}
		s.Close()
		return nil, fmt.Errorf("secondary %s: %w", cfg.Dest, err)
	}
	h, ok := m.(*protocol.HelloOK)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("secondary %s: unexpected handshake reply %T", cfg.Dest, m)
	}
	if h.Version != protocol.Version {
		s.Close()
		return nil, fmt.Errorf("version mismatch: this primary speaks protocol %d (georep %s), the secondary speaks %d (georep %s)", protocol.Version, Version, h.Version, h.Software)
	}
	s.Hello = h
	log.Debug("connected", "took", time.Since(dialStart).Round(time.Millisecond), "new_root", h.NewRoot)
	s.stats.FakeSuper = h.FakeSuper
	go s.conn.Keepalive(ctx, 5*time.Second, 30*time.Second)
	if cfg.Dest.Host != "" {
		s.firstProbe = make(chan struct{})
		go s.probeLink(ctx)
	}
	return s, nil
}

func startsWithDotDot(rel string) bool {
	return rel == ".." || len(rel) >= 3 && rel[:3] == "../"
}

// Close ends the session.
func (s *Session) Close() error {
	if s.conn != nil {
		d, detachable := s.rwc.(interface{ Detach() })
		if detachable && s.cfg.DeferDurability && s.committed {
			// The agent holds the stime to record and finishes on its own
			// (syncfs, stime, exit) once it reads goodbye or the end of
			// the stream: no round trip to wait for, no exit to wait for.
			if s.conn.Send(&protocol.Bye{}, nil) == nil && s.conn.Flush() == nil {
				d.Detach()
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.conn.Call(ctx, &protocol.Bye{})
			cancel()
		}
		s.conn.Close()
	}
	if s.rwc != nil {
		s.rwc.Close()
	}
	if s.opener != nil {
		s.opener.Close()
	}
	if s.srcFD > 0 {
		unix.Close(s.srcFD)
		s.srcFD = -1
	}
	return nil
}

// Stats returns the counters so far.
func (s *Session) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.FailureList = append([]Failure(nil), s.stats.FailureList...)
	if s.conn != nil {
		st.BytesSent = s.conn.BytesSent()
		st.BytesRecv = s.conn.BytesReceived()
	}
	if s.comp != nil {
		sum := s.comp.Summary()
		st.Compression, st.CompressionRatio = sum.Choice.Level.String()+" ("+sum.Choice.Reason.String()+")", sum.Ratio
	}
	return st
}

// ResetFailures clears the failure list (before a retry pass).
func (s *Session) ResetFailures() {
	s.statsMu.Lock()
	s.stats.FailureList = nil
	s.stats.Failures = 0
	s.statsMu.Unlock()
}

func (s *Session) fail(f Failure) {
	s.statsMu.Lock()
	s.stats.Failures++
	if len(s.stats.FailureList) < 10000 {
		s.stats.FailureList = append(s.stats.FailureList, f)
	}
	s.statsMu.Unlock()
	s.log.Warn("sync failed", "op", f.Op, "path", f.Path, "id", f.ID.Short(), "err", f.Error)
}

func (s *Session) count(fn func(*Stats)) {
	s.statsMu.Lock()
	fn(&s.stats)
	s.statsMu.Unlock()
}

func (s *Session) nextStream() uint64 {
	s.streamM.Lock()
	defer s.streamM.Unlock()
	s.stream++
	return s.stream
}

// Stime asks the secondary for its stime.
func (s *Session) Stime(ctx context.Context) (int64, error) {
	m, err := s.conn.Call(ctx, &protocol.StimeGet{})
	if err != nil {
		return 0, err
	}
	return m.(*protocol.StimeOK).Stime, nil
}

// CommitStime makes the secondary durable and records the stime there.
func (s *Session) CommitStime(ctx context.Context, stime int64) error {
	_, err := s.conn.Call(ctx, &protocol.StimeSet{Stime: stime})
	if err != nil {
		return fmt.Errorf("record stime on the secondary: %w", err)
	}
	s.committed = true
	return nil
}

// Conn exposes the protocol connection (for verify).
func (s *Session) Conn() *protocol.Conn { return s.conn }

// Walk lists the source tree.
func (s *Session) Walk(ctx context.Context) (*scan.Result, error) {
	return scan.Walk(ctx, s.cfg.Source, scan.Options{Filter: s.filter, ExcludePaths: s.cfg.ExcludePaths,
		OnMountPoint: func(p string) { s.log.Warn("not crossing into another filesystem", "path", p) },
		OnError:      func(p string, err error) { s.log.Info("entry vanished during the crawl", "path", p, "err", err) }})
}
