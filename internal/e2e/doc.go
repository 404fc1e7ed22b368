// Package e2e holds georep's end-to-end tests: they run the real binary on
// trees made by the repository's workload generator (internal/testutil/
// workload, through testutil.Workload), judge the result with its
// independent tree oracle (internal/testutil/oracle, through
// testutil.VerifyPy, which also runs shared/bench/verify.py where that is
// present), kill real processes, and drive real sshd instances. Every
// fixture is made by the test that needs it, so any one test runs alone on
// a fresh machine; under CI=true a test that cannot run fails.
package e2e
