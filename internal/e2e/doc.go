// Package e2e holds georep's end-to-end tests: they run the real binary on
// trees made by the shared workload generator, judge the result with the
// shared verify oracle, kill real processes, and drive real sshd instances.
package e2e
