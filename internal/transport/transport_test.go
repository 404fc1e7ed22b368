package transport

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSHArgsDefaults(t *testing.T) {
	dst := Destination{Host: "h", Path: "/p"}
	has := func(args []string, s string) bool { return strings.Contains(strings.Join(args, " "), s) }
	args := SSHArgs(dst, Options{})
	if !has(args, "Ciphers=aes128-gcm@openssh.com,") || !has(args, "Compression=no") {
		t.Fatalf("default ssh arguments lack the cipher or compression choice: %q", args)
	}
	for _, cmd := range []string{"ssh -c chacha20-poly1305@openssh.com", "ssh -caes256-ctr", "ssh -o Ciphers=aes256-ctr", "ssh -oCiphers=aes256-ctr", "ssh -o ciphers aes256-ctr"} {
		if args := SSHArgs(dst, Options{SSHCommand: cmd}); has(args, "Ciphers=aes128-gcm") {
			t.Errorf("%q: georep overrode the cipher the ssh command chose: %q", cmd, args)
		}
	}
	for _, cmd := range []string{"ssh -C", "ssh -vC", "ssh -o Compression=yes"} {
		if args := SSHArgs(dst, Options{SSHCommand: cmd}); has(args, "Compression=no") {
			t.Errorf("%q: georep overrode compression: %q", cmd, args)
		}
	}
	// A value that merely contains the letters is not the flag.
	if args := SSHArgs(dst, Options{SSHCommand: "ssh -i /keys/C-key -p 22"}); !has(args, "Compression=no") || !has(args, "Ciphers=") {
		t.Errorf("option values mistaken for flags: %q", args)
	}
}

type sink struct{ bytes.Buffer }

func (*sink) Close() error { return nil }

func TestLimiterPaces(t *testing.T) {
	var s sink
	c := &limitedConn{ReadWriteCloser: struct {
		io.Reader
		io.WriteCloser
	}{strings.NewReader(""), &s}, lim: newLimiter(1 << 20)}
	start := time.Now()
	buf := make([]byte, 512<<10)
	for i := 0; i < 3; i++ {
		if n, err := c.Write(buf); n != len(buf) || err != nil {
			t.Fatalf("write %d, %v", n, err)
		}
	}
	// 1.5 MiB at 1 MiB/s with a 0.1 s burst: about 1.4 s.
	if el := time.Since(start); el < 1200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("1.5 MiB at 1 MiB/s took %s", el)
	}
	if s.Len() != 3*len(buf) {
		t.Fatalf("%d bytes arrived", s.Len())
	}
}
