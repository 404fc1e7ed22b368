package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile to $GEOREP_CPUPROFILE (with the
// process's pid and verb appended) when that variable is set: a developer
// aid for the throughput work, on both the primary and the secondary agent
// (the variable reaches the agent only where the ssh server accepts it or on
// a local secondary). The returned function stops and flushes the profile.
func startProfile(verb string) func() {
	base := os.Getenv("GEOREP_CPUPROFILE")
	if base == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%s.%d", base, verb, os.Getpid()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "georep: cpu profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "georep: cpu profile: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
