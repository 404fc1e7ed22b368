package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// FailKind says why ssh could not carry a session to the agent. It is
// found from ssh's exit status and, for ssh's own failures (status 255), by
// asking the resolver and the network what ssh met: never from the text
// ssh printed, which is only carried along for the operator.
type FailKind int

const (
	// FailUnknown: ssh ended and nothing more could be found out (a proxy
	// command stands between, or ssh was killed).
	FailUnknown FailKind = iota
	// FailResolve: the host name does not resolve. Permanent.
	FailResolve
	// FailConnect: the host's ssh port cannot be reached now (refused,
	// unreachable, timed out). Transient: worth retrying with backoff.
	FailConnect
	// FailRejected: the ssh port answers, yet ssh gave up (authentication
	// refused, host key not trusted, or the server hung up). Permanent
	// when it happens twice in a row; once can be a server restarting.
	FailRejected
	// FailRemoteCommand: the far side could not run the agent (exit 126
	// or 127: not installed, not executable). Permanent.
	FailRemoteCommand
	// FailAgent: the agent started and exited with a status of its own
	// before it answered (a usage error, a root it cannot use). Permanent.
	FailAgent
)

func (k FailKind) String() string {
	switch k {
	case FailResolve:
		return "host name does not resolve"
	case FailConnect:
		return "cannot connect"
	case FailRejected:
		return "ssh refused the session"
	case FailRemoteCommand:
		return "remote command not found"
	case FailAgent:
		return "agent exited"
	}
	return "ssh ended"
}

// SSHError is a session to a remote agent that ssh could not start or keep:
// ssh's exit status, the tail of what it printed on stderr, and the kind
// of failure.
type SSHError struct {
	Target     string // [user@]host
	ExitStatus int    // -1 when ssh was killed by a signal
	Stderr     string // the last lines ssh (or the agent) printed
	Kind       FailKind
	Cause      error // what the diagnosis met (e.g. the resolver's *net.DNSError)
}

func (e *SSHError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh to %s failed (%s", e.Target, e.Kind)
	if e.ExitStatus >= 0 {
		fmt.Fprintf(&b, ", exit status %d", e.ExitStatus)
	}
	b.WriteString(")")
	if e.Stderr != "" {
		b.WriteString(": ")
		b.WriteString(e.Stderr)
	} else if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	if e.Kind == FailRemoteCommand {
		b.WriteString(" (is georep installed there? --remote-georep names its path)")
	}
	return b.String()
}

func (e *SSHError) Unwrap() error { return e.Cause }

// Permanent reports whether retrying cannot help until the operator acts.
// FailRejected counts as permanent only when repeated (see Repeated).
func (e *SSHError) Permanent() bool {
	return e.Kind == FailResolve || e.Kind == FailRemoteCommand || e.Kind == FailAgent
}

// Classify is the pure decision behind an SSHError's kind: ssh's exit
// status, then (for ssh's own status 255) what the diagnosis found.
func Classify(exitStatus int, d Diagnosis) FailKind {
	switch {
	case exitStatus == 126 || exitStatus == 127:
		return FailRemoteCommand
	case exitStatus != 255:
		if exitStatus < 0 {
			return FailUnknown
		}
		return FailAgent
	case d.Proxied:
		return FailUnknown
	case d.ResolveErr != nil:
		return FailResolve
	case d.ConnectErr != nil:
		return FailConnect
	case d.Probed:
		return FailRejected
	}
	return FailUnknown
}

// Diagnosis is what georep found by retracing ssh's first steps.
type Diagnosis struct {
	Proxied    bool  // a ProxyCommand or ProxyJump stands between: nothing probed
	ResolveErr error // the resolver refused the host name
	ConnectErr error // the TCP connection to the ssh port failed
	Probed     bool  // the host resolved and its ssh port accepted a connection
}

// RetryAfterConnectFailure decides whether a connection attempt that failed
// with cur is worth another one, given the previous attempt's error (nil
// on the first): a permanent failure ends at once, a rejection ends when
// it is met twice in a row, anything else is retried.
func RetryAfterConnectFailure(prev, cur error) bool {
	var c *SSHError
	if !errors.As(cur, &c) {
		return true
	}
	if c.Permanent() {
		return false
	}
	if c.Kind == FailRejected {
		var p *SSHError
		if errors.As(prev, &p) && p.Kind == FailRejected {
			return false
		}
	}
	return true
}

// Cause returns the SSHError behind a stream from Dial that ended (ssh
// exited), waiting up to wait for ssh to exit; nil for a local stream or
// an ssh still running.
func Cause(ctx context.Context, rwc any, wait time.Duration) error {
	c, ok := rwc.(*sshConn)
	if !ok {
		if l, isLimited := rwc.(*limitedConn); isLimited {
			c, ok = l.ReadWriteCloser.(*sshConn)
		}
	}
	if !ok {
		return nil
	}
	return c.failure(ctx, wait)
}

func (c *sshConn) failure(ctx context.Context, wait time.Duration) error {
	select {
	case <-c.exited:
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return nil
	}
	status := -1
	var ee *exec.ExitError
	if errors.As(c.exitErr, &ee) {
		status = ee.ExitCode()
	} else if c.exitErr == nil {
		status = 0
	}
	e := &SSHError{Target: c.target, ExitStatus: status, Stderr: c.tail.String()}
	var d Diagnosis
	if status == 255 {
		d = diagnose(ctx, c.sshArgv, c.target)
	}
	e.Kind = Classify(status, d)
	switch e.Kind {
	case FailResolve:
		e.Cause = d.ResolveErr
	case FailConnect:
		e.Cause = d.ConnectErr
	}
	return e
}

// diagnose retraces ssh's first steps: its effective configuration for the
// target (ssh -G, so ~/.ssh/config aliases and ports apply), the resolver,
// then a TCP connection to the ssh port.
func diagnose(ctx context.Context, sshArgv []string, target string) Diagnosis {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	argv := append(append([]string{}, sshArgv...), "-G", target)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
	if err != nil {
		return Diagnosis{}
	}
	host, port, proxied := parseSSHConfig(out)
	if proxied || host == "" {
		return Diagnosis{Proxied: proxied}
	}
	if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
		return Diagnosis{ResolveErr: err}
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return Diagnosis{ConnectErr: err}
	}
	conn.Close()
	return Diagnosis{Probed: true}
}

// parseSSHConfig reads `ssh -G` output: the host name and port ssh uses,
// and whether a proxy stands between.
func parseSSHConfig(out []byte) (host, port string, proxied bool) {
	port = "22"
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "hostname":
			host = v
		case "port":
			port = v
		case "proxycommand", "proxyjump":
			if v != "none" && v != "" {
				proxied = true
			}
		}
	}
	return host, port, proxied
}

// tailBuffer keeps the last lines written to it (at most max bytes) and
// passes everything on to next.
type tailBuffer struct {
	mu   sync.Mutex
	next interface{ Write([]byte) (int, error) }
	buf  []byte
	max  int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	t.mu.Unlock()
	if t.next != nil {
		t.next.Write(p) // best effort: the operator's copy; the tail is kept
	}
	return len(p), nil
}

// String returns the last three non-empty lines kept, joined by "; ".
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		l = strings.TrimSpace(l)
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, "; ")
}
