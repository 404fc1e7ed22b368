package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	errX := errors.New("x")
	cases := []struct {
		status int
		d      Diagnosis
		want   FailKind
	}{
		{127, Diagnosis{}, FailRemoteCommand},
		{126, Diagnosis{}, FailRemoteCommand},
		{1, Diagnosis{}, FailAgent},
		{0, Diagnosis{}, FailAgent},
		{-1, Diagnosis{}, FailUnknown},
		{255, Diagnosis{Proxied: true}, FailUnknown},
		{255, Diagnosis{ResolveErr: errX}, FailResolve},
		{255, Diagnosis{ConnectErr: errX}, FailConnect},
		{255, Diagnosis{Probed: true}, FailRejected},
		{255, Diagnosis{}, FailUnknown},
	}
	for _, c := range cases {
		if got := Classify(c.status, c.d); got != c.want {
			t.Errorf("Classify(%d, %+v) = %v, want %v", c.status, c.d, got, c.want)
		}
	}
}

func TestRetryAfterConnectFailure(t *testing.T) {
	e := func(k FailKind) error { return fmt.Errorf("secondary h:/p: %w", &SSHError{Target: "h", Kind: k}) }
	cases := []struct {
		name      string
		prev, cur error
		want      bool
	}{
		{"not ssh", nil, io.EOF, true},
		{"resolve", nil, e(FailResolve), false},
		{"remote command", nil, e(FailRemoteCommand), false},
		{"agent exited", nil, e(FailAgent), false},
		{"refused connection", e(FailConnect), e(FailConnect), true},
		{"rejected once", nil, e(FailRejected), true},
		{"rejected after a refused connection", e(FailConnect), e(FailRejected), true},
		{"rejected twice", e(FailRejected), e(FailRejected), false},
		{"unknown", e(FailUnknown), e(FailUnknown), true},
	}
	for _, c := range cases {
		if got := RetryAfterConnectFailure(c.prev, c.cur); got != c.want {
			t.Errorf("%s: retry = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseSSHConfig(t *testing.T) {
	host, port, proxied := parseSSHConfig([]byte("user root\nhostname 10.1.2.3\nport 2222\nproxycommand none\n"))
	if host != "10.1.2.3" || port != "2222" || proxied {
		t.Errorf("got %q %q %v", host, port, proxied)
	}
	if _, _, proxied := parseSSHConfig([]byte("hostname h\nproxyjump bastion\n")); !proxied {
		t.Error("proxyjump not noticed")
	}
}

func TestTailBufferKeepsLastLines(t *testing.T) {
	var seen strings.Builder
	tb := &tailBuffer{next: &seen, max: 64}
	for i := range 20 {
		fmt.Fprintf(tb, "line %d\n", i)
	}
	if got := tb.String(); got != "line 17; line 18; line 19" {
		t.Errorf("tail = %q", got)
	}
	if !strings.Contains(seen.String(), "line 0\n") {
		t.Error("the stream was not passed on")
	}
}

// dialCause dials dst with the real ssh and returns why the session ended.
func dialCause(t *testing.T, dst Destination, opts Options) error {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts.Stderr = io.Discard
	rwc, err := Dial(ctx, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rwc.Close()
	io.Copy(io.Discard, rwc) // ssh ends: EOF
	return Cause(ctx, rwc, 10*time.Second)
}

func TestSSHUnknownHostIsPermanent(t *testing.T) {
	start := time.Now()
	err := dialCause(t, Destination{Host: "georep-no-such-host.invalid", Path: "/x"}, Options{})
	var se *SSHError
	if !errors.As(err, &se) {
		t.Fatalf("no SSHError: %v", err)
	}
	var dnsErr *net.DNSError
	if se.Kind != FailResolve || !se.Permanent() || !errors.As(err, &dnsErr) {
		t.Fatalf("unknown host: kind %v, permanent %v, err %v", se.Kind, se.Permanent(), err)
	}
	if se.ExitStatus != 255 || se.Stderr == "" || !strings.Contains(err.Error(), "georep-no-such-host.invalid") {
		t.Errorf("error lacks ssh's status or message: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestSSHRefusedConnectionIsTransient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	err = dialCause(t, Destination{Host: "127.0.0.1", Path: "/x"}, Options{SSHCommand: fmt.Sprintf("ssh -p %d -o StrictHostKeyChecking=no", port)})
	var se *SSHError
	if !errors.As(err, &se) || se.Kind != FailConnect || se.Permanent() {
		t.Fatalf("refused connection: %v", err)
	}
	if !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("the error lacks ssh's own words: %v", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the diagnosis does not carry ECONNREFUSED: %v", err)
	}
}

// FuzzParseSSHConfig: any `ssh -G` output parses without panicking, and a
// hostname line is taken as given.
func FuzzParseSSHConfig(f *testing.F) {
	f.Add([]byte("user root\nhostname 10.0.0.1\nport 22\n"))
	f.Add([]byte("proxyjump a,b\nhostname h\n"))
	f.Add([]byte("\x00\nhostname\n port 5"))
	f.Fuzz(func(t *testing.T, out []byte) {
		host, port, _ := parseSSHConfig(out)
		if port == "" {
			t.Fatalf("empty port from %q", out)
		}
		if host != "" && !strings.Contains(string(out), "hostname "+host) && !strings.Contains(strings.ToLower(string(out)), "hostname "+strings.ToLower(host)) {
			t.Fatalf("host %q not from the output %q", host, out)
		}
	})
}
