// Command workload is the repository's deterministic workload generator,
// with the command line of shared/bench/workload.py (see
// internal/testutil/workload):
//
//	go run ./tools/workload populate DIR --files 5000 --dirs 50
//	go run ./tools/workload churn DIR --scale 0.25
//	go run ./tools/workload single DIR NAME
//
// It exits 0 when done, 2 on a bad command line, 1 on any other error.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/georep/georep/internal/testutil/workload"
)

func main() {
	if err := workload.Main(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		if errors.Is(err, workload.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
