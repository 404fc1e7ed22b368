package testutil

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

// InCI tells whether the tests run under CI: $CI set to anything but "",
// "0" or "false" (CI systems set CI=true; .ci/run passes it through).
func InCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// CannotRun ends a test that cannot run here (not root, a tool or a kernel
// feature missing): it skips the test on a developer's machine, but fails
// it under CI (see InCI), where .ci/run has installed everything the tests
// need, so that CI can never pass by skipping. The message says what is
// missing and how to get it.
func CannotRun(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("cannot run under CI=true (skipped elsewhere): %s", msg)
		return
	}
	t.Skip(msg)
}

// DefaultTestUser is the ordinary account the fixtures create for tests
// that need a non-root user; $GEOREP_TEST_USER overrides it.
const DefaultTestUser = "georeptest"

// TestUserName is the ordinary account tests use for non-root work:
// $GEOREP_TEST_USER, else DefaultTestUser. Pass it through User (or
// SSHDOptions.User) so that it exists.
func TestUserName() string {
	if n := strings.TrimSpace(os.Getenv("GEOREP_TEST_USER")); n != "" {
		return n
	}
	return DefaultTestUser
}

// Account is an ordinary user created for tests.
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// TestUser returns the account TestUserName names, creating it when
// missing (see User).
func TestUser(t testing.TB) Account {
	t.Helper()
	return User(t, TestUserName())
}

// User returns the local account name, creating it first when it does not
// exist (useradd -m -U, shell /bin/bash, a password field that holds no
// password but is not locked, so sshd lets key logins in; with its own
// group of the same name). It is idempotent and safe against other test
// processes creating the same account at the same time; the account is left
// on the machine afterwards (other tests may be using it). Root only.
func User(t testing.TB, name string) Account {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		return account(t, u)
	}
	RequireRoot(t)
	RequireTool(t, "useradd", "passwd")
	ensureUser(t, name)
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("testutil: user %s: %v", name, err)
	}
	return account(t, u)
}

func account(t testing.TB, u *user.User) Account {
	t.Helper()
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatalf("testutil: user %s: uid %q: %v", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		t.Fatalf("testutil: user %s: gid %q: %v", u.Username, u.Gid, err)
	}
	return Account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}
}

// Chown gives the paths (recursively, not following symlinks) to the
// account and its group.
func (a Account) Chown(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := runTool("chown", "-R", "-h", strconv.Itoa(a.UID)+":"+strconv.Itoa(a.GID), p); err != nil {
			t.Fatalf("testutil: %v", err)
		}
	}
}
