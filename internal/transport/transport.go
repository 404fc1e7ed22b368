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
	"syscall"
	"time"

	"github.com/georep/georep/internal/secondary"
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
}

// Dial starts an agent for dst and returns the stream to it.
func Dial(ctx context.Context, dst Destination, opts Options) (io.ReadWriteCloser, error) {
	if dst.Host == "" {
		return local(ctx, dst.Path, opts), nil
	}
	return dialSSH(ctx, dst, opts)
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

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

type sshConn struct {
	io.Reader
	io.WriteCloser
	cmd  *exec.Cmd
	once sync.Once
	wait chan error
}

func (c *sshConn) Close() error {
	c.once.Do(func() {
		c.WriteCloser.Close()
		select {
		case <-c.wait:
		case <-time.After(3 * time.Second):
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.wait:
			case <-time.After(2 * time.Second):
				c.cmd.Process.Kill()
			}
		}
	})
	return nil
}

func dialSSH(ctx context.Context, dst Destination, opts Options) (io.ReadWriteCloser, error) {
	args := SSHArgs(dst, opts)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if opts.Stderr != nil {
		cmd.Stderr = opts.Stderr
	} else {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	c := &sshConn{Reader: stdout, WriteCloser: stdin, cmd: cmd, wait: make(chan error, 1)}
	go func() { c.wait <- cmd.Wait() }()
	context.AfterFunc(ctx, func() { c.Close() })
	return c, nil
}
