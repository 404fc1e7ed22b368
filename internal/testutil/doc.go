// Package testutil owns the real-world fixtures that end-to-end and fault
// tests need: a throwaway sshd on loopback, the georep binary, ext4 loop
// mounts, network namespaces, an ordinary user account, and the
// repository's workload generator and tree oracle (subpackages workload and
// oracle).
//
// It is imported only from _test.go files. Every fixture makes what it
// needs itself, idempotently (a user that does not exist yet is created),
// so that any single test runs alone on a fresh machine, and registers its
// own t.Cleanup. A fixture whose prerequisites are missing (not root, no
// /usr/sbin/sshd, no ip(8), no ./cmd/georep yet) ends the test through
// CannotRun with a message saying what is missing: a skip on a developer's
// machine, a failure under CI=true, so that CI cannot pass by skipping.
// `bash .ci/run` installs everything they need.
//
// Environment variables:
//
//   - GEOREP_BIN: the georep binary to test (.ci/run sets it to bin/georep).
//     Unset, GeorepBin builds ./cmd/georep once per test process.
//   - GEOREP_TOOLS_DIR: a directory holding the workload and treeverify
//     commands (.ci/run builds them into bin/). Unset, they are built from
//     ./tools once per test process.
//   - GEOREP_SHARED_DIR: the shared/ directory holding bench/workload.py and
//     bench/verify.py (optional: where present, VerifyPy runs verify.py as a
//     second oracle). Unset, it is found by walking up from the module root
//     (<clone>/../shared).
//   - GEOREP_TEST_USER: the ordinary account of TestUser (default
//     georeptest), created when missing.
//   - CI: "true" (anything but "", 0, false, no) turns CannotRun's skips
//     into failures.
//
// Fixtures, in short:
//
//   - StartSSHD / StartSSHDInNetns: a private sshd with fresh keys; SSHD.SSHCommand
//     is ready to pass as georep's --ssh-command; Kill and Restart for faults.
//     Its sessions get sshd's plain environment: the user's ~/.bashrc is not
//     run (root's starts pyenv on these machines), so a remote command should
//     be named by absolute path (GeorepBin's is).
//   - LoopExt4 / TinyFS: a freshly made ext4 on a loop device (root only).
//   - NewNetnsPair: a network namespace joined to the root namespace by a veth
//     pair on 10.231.0.0/16 addresses, whose link can be cut and restored.
//   - User / TestUser: an ordinary account, created when missing.
//   - Workload / WorkloadAsync: workload.py's command lines (populate, churn,
//     single) run by tools/workload (internal/testutil/workload).
//   - VerifyPy: verify.py's command line judged by tools/treeverify
//     (internal/testutil/oracle) and, where shared/ is present, by verify.py.
//   - SharedDir: shared/ itself, for a test that needs more of it.
package testutil
