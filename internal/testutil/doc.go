// Package testutil owns the real-world fixtures that end-to-end and fault
// tests need: a throwaway sshd on loopback, the georep binary, ext4 loop
// mounts, network namespaces.
//
// It is imported only from _test.go files. Every fixture registers its own
// t.Cleanup, and a fixture whose prerequisites are missing (not root, no
// /usr/sbin/sshd, no ip(8), no ./cmd/georep yet, no shared/ directory) skips
// the test with a message saying what is missing instead of failing it.
// `bash .ci/run` installs everything they need, so in CI nothing is skipped
// for want of a tool.
//
// Environment variables:
//
//   - GEOREP_BIN: the georep binary to test (.ci/run sets it to bin/georep).
//     Unset, GeorepBin builds ./cmd/georep once per test process.
//   - GEOREP_SHARED_DIR: the shared/ directory holding bench/workload.py and
//     bench/verify.py. Unset, it is found by walking up from the module root
//     (/work/shared beside /work/main; <clone>/../shared in CI).
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
//   - Workload / VerifyPy / SharedDir: the shared bench tools.
package testutil
