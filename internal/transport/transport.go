// Package transport owns reaching a secondary agent: in-process for a local
// path, or `ssh [user@]host georep secondary --root PATH` for a remote one,
// with the destination syntax rsync users know.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/georep/georep/internal/secondary"
	"golang.org/x/sys/unix"
)

// Destination is a parsed DST argument.
type Destination struct {
	Host string // empty for a local path
	User string
	Path string
}

func (d Destination) String() string {
	if d.Host == "" {
		return d.Path
	}
	if d.User != "" {
		return d.User + "@" + d.Host + ":" + d.Path
	}
	return d.Host + ":" + d.Path
}

// ParseDestination reads a local path or [user@]host:/path. As with rsync, a
// colon before any slash means a remote host; "./a:b" or "/a:b" is local.
func ParseDestination(s string) (Destination, error) {
	if s == "" {
		return Destination{}, errors.New("empty destination")
	}
	colon := strings.IndexByte(s, ':')
	slash := strings.IndexByte(s, '/')
	if colon > 0 && (slash < 0 || colon < slash) {
		host, path := s[:colon], s[colon+1:]
		user := ""
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			user, host = host[:at], host[at+1:]
		}
		if host == "" {
			return Destination{}, fmt.Errorf("destination %q: empty host", s)
		}
		if path == "" {
			path = "."
		}
		return Destination{Host: host, User: user, Path: path}, nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return Destination{}, err
	}
	return Destination{Path: abs}, nil
}

// Options for Dial.
type Options struct {
	SSHCommand   string // e.g. "ssh -p 2222 -i KEY"; default "ssh"
	RemoteGeorep string // command on the far side; default "georep"
	Software     string
	Logger       *slog.Logger
	FakeSuper    bool
	Stderr       io.Writer // where the remote agent's stderr goes
	// BandwidthLimit caps the bytes per second written to the agent
	// (0 = no limit): a token bucket on the stream's writer.
	BandwidthLimit int64
}

// Dial starts an agent for dst and returns the stream to it.
func Dial(ctx context.Context, dst Destination, opts Options) (io.ReadWriteCloser, error) {
	var rwc io.ReadWriteCloser
	if dst.Host == "" {
		rwc = local(ctx, dst.Path, opts)
	} else {
		var err error
		if rwc, err = dialSSH(ctx, dst, opts); err != nil {
			return nil, err
		}
	}
	if opts.BandwidthLimit > 0 {
		rwc = &limitedConn{ReadWriteCloser: rwc, lim: newLimiter(opts.BandwidthLimit)}
	}
	return rwc, nil
}

// limitedConn paces its writes with a token bucket.
type limitedConn struct {
	io.ReadWriteCloser
	lim *limiter
}

func (c *limitedConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n := c.lim.take(len(p) - done)
		w, err := c.ReadWriteCloser.Write(p[done : done+n])
		done += w
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// limiter is a token bucket: rate bytes per second, bursts of at most a
// tenth of a second's worth (and at least 16 KiB).
type limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newLimiter(rate int64) *limiter {
	b := max(float64(rate)/10, 16<<10)
	return &limiter{rate: float64(rate), burst: b, tokens: b, last: time.Now()}
}

// take waits until it may write, and returns how many of want bytes.
func (l *limiter) take(want int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(float64(want), l.burst)
	for {
		now := time.Now()
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
		if l.tokens >= n {
			l.tokens -= n
			return int(n)
		}
		time.Sleep(time.Duration((n - l.tokens) / l.rate * float64(time.Second)))
	}
}

type pipeConn struct {
	io.Reader
	io.Writer
	closeFn func() error
	once    sync.Once
	err     error
}

func (p *pipeConn) Close() error {
	p.once.Do(func() { p.err = p.closeFn() })
	return p.err
}

// local runs the agent in this process, connected by pipes.
func local(ctx context.Context, root string, opts Options) io.ReadWriteCloser {
	toAgentR, toAgentW := io.Pipe()
	fromAgentR, fromAgentW := io.Pipe()
	agentSide := &pipeConn{Reader: toAgentR, Writer: fromAgentW, closeFn: func() error {
		toAgentR.Close()
		return fromAgentW.Close()
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := secondary.Serve(ctx, agentSide, secondary.Options{Root: root, Software: opts.Software, Logger: opts.Logger, FakeSuper: opts.FakeSuper})
		if err != nil {
			fromAgentW.CloseWithError(err)
		} else {
			fromAgentW.Close()
		}
		toAgentR.Close()
	}()
	return &pipeConn{Reader: fromAgentR, Writer: toAgentW, closeFn: func() error {
		toAgentW.Close()
		fromAgentR.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		return nil
	}}
}

// SSHArgs builds the ssh command line for dst.
func SSHArgs(dst Destination, opts Options) []string {
	cmd := opts.SSHCommand
	if cmd == "" {
		cmd = "ssh"
	}
	args := strings.Fields(cmd)
	// Notice a dead link even when no georep message is due.
	args = append(args, "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "BatchMode=yes")
	// Bulk data: prefer AES-GCM (AES-NI makes it the cheapest cipher on
	// most CPUs) and leave compression to georep (--compress), unless the
	// ssh command chooses for itself. Every cipher ssh offers by default
	// stays on the list, so any server still agrees on one.
	if !sshOptionGiven(args[1:], "-c", "ciphers") {
		args = append(args, "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr")
	}
	if !sshOptionGiven(args[1:], "-C", "compression") {
		args = append(args, "-o", "Compression=no")
	}
	target := dst.Host
	if dst.User != "" {
		target = dst.User + "@" + dst.Host
	}
	remote := opts.RemoteGeorep
	if remote == "" {
		remote = "georep"
	}
	rcmd := remote + " secondary --root " + shellQuote(dst.Path)
	if opts.FakeSuper {
		rcmd += " --fake-super"
	}
	return append(args, target, rcmd)
}

// sshOptionGiven reports whether ssh arguments set an option, by its
// one-letter flag (e.g. "-c", also "-caes128-ctr" or "-vC") or by -o NAME.
func sshOptionGiven(args []string, flag, name string) bool {
	const boolFlags = "46AaCfGgKkMNnqsTtVvXxYy"
	letter := flag[1:]
	for i, a := range args {
		if a == flag {
			return true
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			if strings.Trim(a[1:], boolFlags) == "" && strings.Contains(a[1:], letter) {
				return true // a cluster of flags without arguments
			}
			if !strings.Contains(boolFlags, letter) && a[1:2] == letter {
				return true // -cVALUE
			}
		}
		opt := ""
		switch {
		case a == "-o" && i+1 < len(args):
			opt = args[i+1]
		case strings.HasPrefix(a, "-o"):
			opt = a[2:]
		default:
			continue
		}
		k := strings.TrimSpace(opt)
		if j := strings.IndexAny(k, "= \t"); j >= 0 {
			k = k[:j]
		}
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// PipeSize is the buffer size georep asks for its pipes to and from ssh
// (the default /proc/sys/fs/pipe-max-size, so no privilege is needed).
const PipeSize = 1 << 20

// EnlargePipe gives a pipe a PipeSize buffer; anything else (a terminal, a
// socket, a file) is left alone.
func EnlargePipe(f *os.File) {
	sc, err := f.SyscallConn() // not f.Fd(): that would make f blocking
	if err != nil {
		return
	}
	sc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeSize)
		}
	})
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

type sshConn struct {
	io.Reader
	io.WriteCloser
	cmd      *exec.Cmd
	once     sync.Once
	exited   chan struct{} // closed once ssh exited; exitErr is then set
	exitErr  error
	rd       *os.File // read end of ssh's stdout, closed last
	detached atomic.Bool
	// For SSHError: what ssh printed last, its command and target.
	tail    *tailBuffer
	sshArgv []string
	target  string
}

// Detach makes Close end the session without waiting for ssh to exit: for
// an agent that said goodbye and still has work of its own (making the
// session durable). ssh exits when the agent does, reaped meanwhile.
func (c *sshConn) Detach() { c.detached.Store(true) }

func (c *sshConn) Close() error {
	c.once.Do(func() {
		c.WriteCloser.Close()
		if c.detached.Load() {
			go func() {
				<-c.exited
				if c.rd != nil {
					c.rd.Close()
				}
			}()
			return
		}
		select {
		case <-c.exited:
		case <-time.After(3 * time.Second):
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(2 * time.Second):
				c.cmd.Process.Kill()
			}
		}
		if c.rd != nil {
			c.rd.Close()
		}
	})
	return nil
}

func dialSSH(ctx context.Context, dst Destination, opts Options) (io.ReadWriteCloser, error) {
	args := SSHArgs(dst, opts)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Our own pipes, enlarged: with the default 64 KiB, ssh and georep
	// wake each other for every few packets of bulk data.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	EnlargePipe(inW)
	EnlargePipe(outR)
	cmd.Stdin, cmd.Stdout = inR, outW
	// ssh's stderr goes where the caller wants it, and its last lines are
	// kept for the error that says why the session ended.
	tail := &tailBuffer{next: opts.Stderr, max: 4096}
	if opts.Stderr == nil {
		tail.next = os.Stderr
	}
	cmd.Stderr = tail
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	nflags := len(strings.Fields(opts.SSHCommand))
	if nflags == 0 {
		nflags = 1
	}
	c := &sshConn{Reader: outR, WriteCloser: inW, cmd: cmd, exited: make(chan struct{}), rd: outR,
		tail: tail, sshArgv: args[:nflags:nflags], target: args[len(args)-2]}
	go func() { c.exitErr = cmd.Wait(); close(c.exited) }()
	context.AfterFunc(ctx, func() { c.Close() })
	return c, nil
}
