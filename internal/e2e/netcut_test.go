package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/testutil"
)

// ncDetectBound is how long after a link is cut `georep sync` may take to
// say so: ssh's ServerAliveInterval=5 x ServerAliveCountMax=3 (15-20 s)
// notices first, the protocol keepalive (30 s of silence, checked every
// 5 s) is the backstop, and closing the dead session may take 5 s more.
const ncDetectBound = 45 * time.Second

// ncLost is what `georep sync` logs when it lost the secondary.
const ncLost = "connection to the secondary lost"

// ncLines keeps a process's output with the time each line arrived.
type ncLines struct {
	mu    sync.Mutex
	all   bytes.Buffer
	part  []byte
	lines []ncLine
}

type ncLine struct {
	at   time.Time
	text string
}

func (w *ncLines) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, ncLine{now, string(w.part[:i])})
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func (w *ncLines) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// all returns the lines holding substr that arrived after t.
func (w *ncLines) find(substr string, after time.Time) []ncLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ncLine
	for _, l := range w.lines {
		if !l.at.Before(after) && strings.Contains(l.text, substr) {
			out = append(out, l)
		}
	}
	return out
}

// wait waits up to timeout for a line holding substr after t.
func (w *ncLines) wait(substr string, after time.Time, timeout time.Duration) (ncLine, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if ls := w.find(substr, after); len(ls) > 0 {
			return ls[0], true
		}
		if time.Now().After(deadline) {
			return ncLine{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ncSync is a `georep sync` running in the background.
type ncSync struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	errs   ncLines
	start  time.Time
	exited chan struct{}
	err    error
}

func ncStartSync(t *testing.T, bin string, args ...string) *ncSync {
	t.Helper()
	s := &ncSync{exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"sync", "--no-progress", "-v"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.errs
	s.cmd.WaitDelay = 5 * time.Second // an orphaned ssh must not hold the test
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.start = time.Now()
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
	})
	return s
}

func (s *ncSync) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *ncSync) waitExit(timeout time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (s *ncSync) summary(t *testing.T) summary {
	t.Helper()
	var sum summary
	if err := json.Unmarshal(s.out.Bytes(), &sum); err != nil {
		t.Fatalf("sync printed no JSON summary (%v): %s\nstderr:\n%s", err, s.out.String(), tail(s.errs.String(), 4000))
	}
	return sum
}

var ncBackoff = regexp.MustCompile(`attempt=(\d+) in=(\S+)`)

// ncNetSync starts a netns with an sshd, the 20,000-file tree (plus two
// 64 MiB files, so that data flows for a while) and a sync of it to the
// namespace; it returns once the sync is sending data.
func ncNetSync(t *testing.T, extra ...string) (ns *testutil.NetnsPair, sshd *testutil.SSHD, bin, p, s, st string, run *ncSync) {
	testutil.RequireRoot(t)
	bin = testutil.GeorepBin(t)
	dir := workdir(t) // first, so that it is unmounted after the sshd and its sessions are gone
	ns = testutil.NewNetnsPair(t)
	sshd = testutil.StartSSHDInNetns(t, ns, testutil.SSHDOptions{})
	t.Cleanup(func() { ns.LinkUp() })
	p, s, st = filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "20000", "--large", "2", "--large-mib", "64")
	args := append([]string{p, sshd.UserHost() + ":" + s, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}, extra...)
	run = ncStartSync(t, bin, args...)
	// Cut while data flows: the crawl is done, the files are on their way.
	if _, ok := run.errs.wait("crawl done", run.start, time.Minute); !ok || !run.running() {
		t.Fatalf("the sync did not reach its data phase (running: %v, %v)\n%s", run.running(), run.err, tail(run.errs.String(), 2000))
	}
	time.Sleep(300 * time.Millisecond)
	if !run.running() {
		t.Fatalf("the sync finished before the cut; make the tree bigger\n%s", tail(run.errs.String(), 2000))
	}
	return
}

// TestSyncSurvivesNetworkCut: the link to the secondary's host goes down for
// about 20 s in the middle of a 20,000-file sync over ssh. The sync notices
// within ncDetectBound, retries with exponential backoff while the host is
// unreachable, reconnects once the link is back, and completes: exit 0 and
// verify.py finds the replica identical.
func TestSyncSurvivesNetworkCut(t *testing.T) {
	ns, sshd, bin, p, s, _, run := ncNetSync(t, "--json")
	if err := ns.LinkDown(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	lost, ok := run.errs.wait(ncLost, down, ncDetectBound)
	if !ok {
		ns.LinkUp()
		t.Fatalf("the sync did not notice the cut within %s (running: %v)\nstderr:\n%s", ncDetectBound, run.running(), tail(run.errs.String(), 4000))
	}
	detect := lost.at.Sub(down)
	// Stay down a while longer, so that reconnecting meets an unreachable
	// host and backs off; ~20 s in all.
	time.Sleep(time.Until(down.Add(20 * time.Second)))
	if time.Since(lost.at) < 3*time.Second {
		time.Sleep(3*time.Second - time.Since(lost.at))
	}
	if err := ns.LinkUp(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if !run.waitExit(90 * time.Second) {
		t.Fatalf("the sync did not finish within 90s of the link coming back\nstderr:\n%s", tail(run.errs.String(), 4000))
	}
	if run.err != nil {
		t.Fatalf("sync after a network cut: %v\n%s\nstderr:\n%s", run.err, run.out.String(), tail(run.errs.String(), 4000))
	}
	sum := run.summary(t)
	if !sum.OK {
		t.Fatalf("sync summary not ok: %s", run.out.String())
	}
	// The retries while the link was down back off exponentially.
	var waits []time.Duration
	for _, l := range run.errs.find(ncLost, down) {
		if m := ncBackoff.FindStringSubmatch(l.text); m != nil {
			d, _ := time.ParseDuration(m[2])
			waits = append(waits, d)
		}
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] != min(2*waits[i-1], 10*time.Second) {
			t.Errorf("backoff %v after %v: not exponential (%v)", waits[i], waits[i-1], waits)
		}
	}
	var resumed time.Duration = -1
	if ls := run.errs.find("crawl done", up); len(ls) > 0 {
		resumed = ls[0].at.Sub(up)
	}
	why := ""
	if m := regexp.MustCompile(`err=(.*)`).FindStringSubmatch(lost.text); m != nil {
		why = m[1]
	}
	t.Logf("cut for %s; noticed after %s (%s); %d reconnect attempts while down, backoff %v; crawl done %s after the link came back; sync %.1fs in all, %d files",
		up.Sub(down).Round(100*time.Millisecond), detect.Round(100*time.Millisecond), why, len(waits), waits,
		resumed.Round(100*time.Millisecond), sum.Seconds, sum.Stats.DataFiles)
	if detect > ncDetectBound {
		t.Errorf("noticed the cut after %s, bound %s", detect, ncDetectBound)
	}
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("replica does not verify after a network cut:\n%s", out)
	}
	if code, out, _ := rvRun(t, bin, p, sshd.UserHost()+":"+s, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin); code != 0 {
		t.Errorf("georep verify over the restored link: exit %d\n%s", code, tail(out, 2000))
	}
}

// TestSyncGivesUpWhileLinkDown: the link goes down mid-sync and stays down
// past the reconnect budget (--reconnects 3): the sync exits non-zero,
// saying the secondary is unreachable; once the link is back, the next sync
// converges.
func TestSyncGivesUpWhileLinkDown(t *testing.T) {
	ns, sshd, bin, p, s, st, run := ncNetSync(t, "--reconnects", "3")
	if err := ns.LinkDown(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if !run.waitExit(ncDetectBound + 15*time.Second) {
		ns.LinkUp()
		t.Fatalf("the sync did not give up within %s of the cut\nstderr:\n%s", ncDetectBound+15*time.Second, tail(run.errs.String(), 4000))
	}
	gaveUp := time.Since(down)
	var ee *exec.ExitError
	if !errors.As(run.err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("sync exit %v with the link down, want exit status 1\nstderr:\n%s", run.err, tail(run.errs.String(), 4000))
	}
	errs := run.errs.String()
	attempts := len(run.errs.find(ncLost, down))
	if attempts != 2 {
		t.Errorf("%d reconnect attempts logged, want 2 (then the third failure ends the sync)", attempts)
	}
	// What the user reads: ssh's reason, then georep's verdict naming the
	// secondary.
	last := ""
	if i := strings.LastIndex(errs, "georep sync: "); i >= 0 {
		last = strings.TrimSpace(errs[i:])
	}
	if !strings.Contains(errs, "No route to host") || !strings.Contains(last, sshd.UserHost()+":"+s) {
		t.Errorf("the failure does not say the secondary is unreachable:\n%s", tail(errs, 3000))
	}
	t.Logf("gave up %s after the cut, after %d reconnect attempts; stdout: %s; last line: %s",
		gaveUp.Round(100*time.Millisecond), attempts, strings.TrimSpace(run.out.String()), last)
	if err := ns.LinkUp(); err != nil {
		t.Fatal(err)
	}
	again := runSync(t, bin, p, sshd.UserHost()+":"+s, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin)
	t.Logf("next sync: %d files in %.1fs", again.Stats.DataFiles, again.Seconds)
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("replica does not verify after the next sync:\n%s", out)
	}
}

// ncPipeConn is one end of a pair of io.Pipes.
type ncPipeConn struct {
	io.Reader
	io.Writer
	closeFn func()
}

func (c ncPipeConn) Close() error { c.closeFn(); return nil }

func ncPipes() (client, server ncPipeConn) {
	toSrvR, toSrvW := io.Pipe()
	toCliR, toCliW := io.Pipe()
	client = ncPipeConn{Reader: toCliR, Writer: toSrvW, closeFn: func() { toSrvW.Close(); toCliR.Close() }}
	server = ncPipeConn{Reader: toSrvR, Writer: toCliW, closeFn: func() { toSrvR.Close(); toCliW.Close() }}
	return
}

// TestKeepaliveNoticesStalledLink: a peer that stops reading and answering
// (a cut link) is noticed within the keepalive timeout even while a writer
// is blocked on the stalled stream.
func TestKeepaliveNoticesStalledLink(t *testing.T) {
	client, server := ncPipes()
	defer server.Close()
	start := time.Now() // nothing is ever received: idle from the start
	c := protocol.NewConn(client)
	defer c.Close()
	// A write nobody reads: it blocks holding the connection's writer.
	go func() {
		c.Send(&protocol.PutFile{Stream: 1, Mode: protocol.FileReplace, Data: make([]byte, 1<<20)}, func(protocol.Message, error) bool { return true })
		c.Flush()
	}()
	time.Sleep(20 * time.Millisecond)
	const timeout = 200 * time.Millisecond
	go c.Keepalive(context.Background(), 20*time.Millisecond, timeout)
	select {
	case <-c.Done():
	case <-time.After(10 * timeout):
		t.Fatalf("a stalled link was not noticed within %s (keepalive timeout %s)", 10*timeout, timeout)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("gave up after %s, before the %s timeout", took, timeout)
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "no answer from the secondary") {
		t.Errorf("error %v, want the keepalive's", err)
	}
}

// TestKeepalivePingsWhileReceiving: the primary pings at every interval even
// while replies stream in, so that an agent's idle timer (which sees only
// what the primary sends) is fed when the primary only receives.
func TestKeepalivePingsWhileReceiving(t *testing.T) {
	client, server := ncPipes()
	c := protocol.NewConn(client)
	defer c.Close()
	defer server.Close()
	var wmu sync.Mutex
	write := func(typ protocol.Type, id uint64, m protocol.Message) error {
		wmu.Lock()
		defer wmu.Unlock()
		return protocol.WriteFrame(server, typ, id, protocol.Encode(m))
	}
	var pings atomic.Int32
	listID := make(chan uint64, 1)
	go func() {
		for {
			f, err := protocol.ReadFrame(server)
			if err != nil {
				return
			}
			switch f.Type {
			case protocol.TPing:
				pings.Add(1)
				write(protocol.TPong, f.ReqID, &protocol.Pong{})
			case protocol.TList:
				listID <- f.ReqID
			}
		}
	}()
	// A listing that streams a chunk every 2 ms.
	c.Send(&protocol.List{}, func(protocol.Message, error) bool { return false })
	c.Flush()
	id := <-listID
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				if write(protocol.TListChunk, id, &protocol.ListChunk{}) != nil {
					return
				}
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go c.Keepalive(ctx, 20*time.Millisecond, time.Second)
	time.Sleep(400 * time.Millisecond)
	cancel()
	close(stop)
	if n := pings.Load(); n < 5 {
		t.Errorf("%d pings in 400 ms at a 20 ms interval while replies streamed in", n)
	}
	if err := c.Err(); err != nil {
		t.Errorf("connection failed: %v", err)
	}
}
