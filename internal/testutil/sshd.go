package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SSHDPath is the sshd the fixtures start (it must be an absolute path:
// sshd re-executes itself for every connection).
const SSHDPath = "/usr/sbin/sshd"

// sshdReadyTimeout bounds how long a start waits for the SSH banner.
const sshdReadyTimeout = 10 * time.Second

// SSHDOptions configures StartSSHD and StartSSHDInNetns. The zero value gives
// an sshd that lets the current user (root in CI) in with the client key and
// runs whatever command the client asks for.
type SSHDOptions struct {
	// User is the account the client logs in as; "" means the user running
	// the test. Another user needs root: it is created (useradd -m, shell
	// /bin/bash, no password but not locked) when missing, and is left on
	// the machine afterwards.
	User string
	// ForcedCommand, when set, restricts the client key to that command:
	// its authorized_keys line becomes `command="ForcedCommand",restrict KEY`
	// and the command the client asks for is in $SSH_ORIGINAL_COMMAND.
	ForcedCommand string
	// AuthorizedKeysLine, when set, is the whole authorized_keys line, used
	// as given but for the token {pubkey}, replaced by the client public key
	// (e.g. `from="127.0.0.1",command="georep agent" {pubkey}`). It wins over
	// ForcedCommand.
	AuthorizedKeysLine string
	// ExtraConfig lines go at the top of sshd_config, before the defaults,
	// so they take precedence (sshd keeps the first value of a keyword),
	// e.g. "ClientAliveInterval 1". No Match blocks.
	ExtraConfig []string
}

// SSHD is a running throwaway sshd. Its fields are read-only.
type SSHD struct {
	Host        string // address it listens on: 127.0.0.1, or the namespace address
	Port        int    // port it listens on
	User        string // account the client key logs into
	KeyFile     string // client private key (ed25519, no passphrase)
	PubKey      string // client public key line ("ssh-ed25519 AAAA... comment")
	HostKeyFile string // host private key; HostKeyFile+".pub" is its public half
	Dir         string // temp dir with sshd_config, keys, pid file and sshd.log
	ConfigFile  string // the generated sshd_config
	LogFile     string // sshd's stderr (LogLevel ERROR), appended across restarts

	authKeysFile string
	netns        *NetnsPair // nil: started in the root namespace

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// StartSSHD starts `/usr/sbin/sshd -D -e -f <generated config>` on a free
// port of 127.0.0.1 with a fresh ed25519 host key and client key, waits until
// it answers with its SSH banner, and registers a cleanup that kills it, its
// connections and the commands they run. It skips the test when sshd, ssh or
// ssh-keygen is missing.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	s := newSSHD(t, opts, "127.0.0.1", nil)
	var lastErr error
	for range 8 {
		s.Port = freePort(t)
		s.writeConfig(t, opts)
		s.mu.Lock()
		lastErr = s.startLocked()
		s.mu.Unlock()
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errBind) {
			break
		}
	}
	t.Fatalf("testutil: starting sshd: %v", lastErr)
	return nil
}

// StartSSHDInNetns starts an sshd like StartSSHD, but inside the network
// namespace of ns (through nsenter, see Netns.Exec: it shares the test's
// mounts), listening on ns.NSAddr port 22: cutting the link with ns.LinkDown
// cuts every connection to it. Restart needs the link up.
func StartSSHDInNetns(t testing.TB, ns *NetnsPair, opts SSHDOptions) *SSHD {
	t.Helper()
	s := newSSHD(t, opts, ns.NSAddr, ns)
	s.Port = 22
	s.writeConfig(t, opts)
	s.mu.Lock()
	err := s.startLocked()
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("testutil: starting sshd in netns %s: %v", ns.Name, err)
	}
	return s
}

func newSSHD(t testing.TB, opts SSHDOptions, host string, ns *NetnsPair) *SSHD {
	t.Helper()
	if !isExecutable(SSHDPath) {
		CannotRun(t, "testutil: %s is missing (apt-get install openssh-server; .ci/run installs it)", SSHDPath)
	}
	RequireTool(t, "ssh", "openssh-client")
	keygen := RequireTool(t, "ssh-keygen", "openssh-client")

	me, err := user.Current()
	if err != nil {
		t.Fatalf("testutil: current user: %v", err)
	}
	name := opts.User
	if name == "" {
		name = me.Username
	}
	if name != me.Username {
		if os.Geteuid() != 0 {
			CannotRun(t, "testutil: an sshd for user %q needs root", name)
		}
		ensureUser(t, name)
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start without its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("testutil: %v", err)
		}
	}

	dir := t.TempDir()
	s := &SSHD{
		Host:        host,
		User:        name,
		Dir:         dir,
		KeyFile:     filepath.Join(dir, "client_ed25519"),
		HostKeyFile: filepath.Join(dir, "host_ed25519"),
		ConfigFile:  filepath.Join(dir, "sshd_config"),
		LogFile:     filepath.Join(dir, "sshd.log"),
		netns:       ns,
	}
	for _, k := range []struct{ file, comment string }{
		{s.KeyFile, "georep-test-client"},
		{s.HostKeyFile, "georep-test-host"},
	} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", k.comment, "-f", k.file).CombinedOutput(); err != nil {
			t.Fatalf("testutil: ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(s.KeyFile + ".pub")
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	s.PubKey = strings.TrimSpace(string(pub))

	// sshd reads authorized_keys with the target user's uid, so for another
	// user the file must sit where that user can reach it: t.TempDir() is in
	// a 0700 directory.
	akDir := dir
	if name != me.Username {
		akDir, err = os.MkdirTemp("/tmp", "georep-sshd-keys-")
		if err != nil {
			t.Fatalf("testutil: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(akDir) })
		if err := os.Chmod(akDir, 0o755); err != nil {
			t.Fatalf("testutil: %v", err)
		}
	}
	s.authKeysFile = filepath.Join(akDir, "authorized_keys."+name)
	line := s.PubKey
	switch {
	case opts.AuthorizedKeysLine != "":
		line = opts.AuthorizedKeysLine
	case opts.ForcedCommand != "":
		line = `command="` + strings.ReplaceAll(opts.ForcedCommand, `"`, `\"`) + `",restrict {pubkey}`
	}
	s.SetAuthorizedKeysLine(t, line)

	t.Cleanup(func() {
		s.Kill()
		killSSHSessions(s.Host, s.Port)
		if t.Failed() {
			if b, err := os.ReadFile(s.LogFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
				t.Logf("testutil: sshd log (%s):\n%s", s.LogFile, tail(b, 4000))
			}
		}
	})
	return s
}

// SetAuthorizedKeysLine replaces the authorized_keys file of the sshd with
// the one line given, {pubkey} standing for the client public key. sshd
// reads the file at every login, so this takes effect for the next one.
func (s *SSHD) SetAuthorizedKeysLine(t testing.TB, line string) {
	t.Helper()
	line = strings.ReplaceAll(line, "{pubkey}", s.PubKey)
	if err := os.WriteFile(s.authKeysFile, []byte(line+"\n"), 0o644); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	if err := os.Chmod(s.authKeysFile, 0o644); err != nil { // past the umask
		t.Fatalf("testutil: %v", err)
	}
}

var userMu sync.Mutex

// ensureUser creates the account if missing, with a password field that is
// empty of any password yet not locked ("*"): with UsePAM no, sshd refuses
// locked ("!") accounts even for key logins.
func ensureUser(t testing.TB, name string) {
	t.Helper()
	userMu.Lock()
	defer userMu.Unlock()
	if _, err := user.Lookup(name); err == nil {
		return
	}
	args := []string{"-m", "-s", "/bin/bash", "-p", "*", "-c", "georep test user"}
	if _, err := user.LookupGroup(name); err == nil {
		args = append(args, "-g", name) // a group left behind by an earlier userdel
	} else {
		args = append(args, "-U")
	}
	err := runTool("useradd", append(args, name)...)
	if _, lerr := user.Lookup(name); lerr != nil { // another test process may have won the race
		t.Fatalf("testutil: creating user %s: %v", name, err)
	}
}

// accountLocked tells whether /etc/shadow marks the account locked ("!...").
func accountLocked(name string) bool {
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) >= 2 && f[0] == name {
			return strings.HasPrefix(f[1], "!")
		}
	}
	return false
}

func (s *SSHD) writeConfig(t testing.TB, opts SSHDOptions) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# written by internal/testutil for one test; not a system sshd\n")
	for _, l := range opts.ExtraConfig {
		b.WriteString(l + "\n")
	}
	// SetEnv SHLVL=1 (below) keeps bash from sourcing the user's ~/.bashrc
	// for ssh commands (Debian's bash does so when SSH_CLIENT is set and
	// SHLVL is unset): root's runs `pyenv init` on these machines, slow and
	// lock-contended under parallel logins. Sessions get sshd's plain
	// environment, as on a stock remote host.
	//
	// A locked account gets in only through PAM; otherwise keep PAM out.
	usePAM := "no"
	if os.Geteuid() == 0 && accountLocked(s.User) {
		if _, err := os.Stat("/etc/pam.d/sshd"); err == nil {
			usePAM = "yes"
		}
	}
	sftp := "internal-sftp"
	if isExecutable("/usr/lib/openssh/sftp-server") {
		sftp = "/usr/lib/openssh/sftp-server"
	}
	fmt.Fprintf(&b, `ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM %s
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp %s
SetEnv SHLVL=1
`, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), s.HostKeyFile, filepath.Join(s.Dir, "sshd.pid"),
		filepath.Join(filepath.Dir(s.authKeysFile), "authorized_keys.%u"), usePAM, sftp)
	if err := os.WriteFile(s.ConfigFile, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("testutil: %v", err)
	}
}

var errBind = errors.New("address in use")

// startLocked starts sshd and waits for its banner. s.mu is held.
func (s *SSHD) startLocked() error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)

	argv := []string{SSHDPath, "-D", "-e", "-f", s.ConfigFile}
	if s.netns != nil {
		if argv, err = s.netns.argv(argv...); err != nil {
			return err
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group; dies with the test process even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	deadline := time.Now().Add(sshdReadyTimeout)
	for {
		select {
		case <-done:
			s.cmd = nil
			msg := s.logSince(logStart)
			err := fmt.Errorf("sshd on %s exited at start (%v): %s", addr, cmd.ProcessState, msg)
			if strings.Contains(msg, "Address already in use") || strings.Contains(msg, "Cannot bind any address") {
				err = fmt.Errorf("%w: %w", errBind, err)
			}
			return err
		default:
		}
		if sshBanner(addr, 500*time.Millisecond) {
			return nil
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("sshd on %s gave no SSH banner within %v: %s", addr, sshdReadyTimeout, s.logSince(logStart))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *SSHD) logSince(off int64) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return strings.TrimSpace(tail(b[off:], 2000))
}

// sshBanner tells whether addr answers with an SSH identification string.
func sshBanner(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Kill SIGKILLs the sshd, the connections it serves and the commands they
// run, as a crash of the remote side would; new connections are refused
// until Restart. Killing a stopped sshd does nothing.
func (s *SSHD) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *SSHD) killLocked() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		// It exited and was reaped: its pid may be another process's
		// now (another test's, in another package), never to be killed.
		s.cmd = nil
		return
	default:
	}
	killTree(s.cmd.Process.Pid)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	s.cmd = nil
}

// pid is the sshd listener's pid, 0 when it is not running.
func (s *SSHD) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running tells whether the sshd process is up (started and not killed).
func (s *SSHD) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Restart kills the sshd if it runs and starts it again on the same address,
// port, keys and config, waiting for its banner. It retries for a few
// seconds while the port is still taken.
func (s *SSHD) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	deadline := time.Now().Add(sshdReadyTimeout)
	for {
		err := s.startLocked()
		if err == nil {
			return
		}
		if !errors.Is(err, errBind) || time.Now().After(deadline) {
			t.Fatalf("testutil: restarting sshd: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SSHArgs returns the ssh client command line, as SSHCommand but as argv.
func (s *SSHD) SSHArgs() []string {
	return []string{"ssh", "-F", "/dev/null", "-p", strconv.Itoa(s.Port), "-i", s.KeyFile,
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"}
}

// SSHCommand returns the ssh client command that reaches this sshd, to be
// used as georep's --ssh-command (or rsync -e); the destination is
// UserHost(). It reads no ssh_config (-F /dev/null) and trusts any host key.
func (s *SSHD) SSHCommand() string {
	return strings.Join(s.SSHArgs(), " ")
}

// UserHost returns "user@host" for this sshd, e.g. "root@127.0.0.1".
func (s *SSHD) UserHost() string {
	return s.User + "@" + s.Host
}

// Run runs a command through ssh and returns its standard output; the error
// carries its standard error. Each arg reaches the remote side as one word
// (they are shell-quoted), so use Run(t, "sh", "-c", script) for a script.
// It gives up after 2 minutes.
func (s *SSHD) Run(t testing.TB, args ...string) (stdout string, err error) {
	t.Helper()
	// Not t.Context(): Run must work from a t.Cleanup too.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append(s.SSHArgs(), s.UserHost())
	if len(args) > 0 {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = shellQuote(a)
		}
		argv = append(argv, strings.Join(q, " "))
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ssh %s %s: %w: %s", s.UserHost(), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
