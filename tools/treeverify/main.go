// Command treeverify is the repository's independent tree oracle, with the
// command line of shared/bench/verify.py (see internal/testutil/oracle):
//
//	go run ./tools/treeverify SRC DST [--no-owner] [--no-xattrs] [--no-acls]
//	    [--mtime-ns] [--no-mtime] [--dir-mtime] [--exclude PATTERN ...] [--show N]
//
// It prints the first differences and a summary line, and exits 0 only when
// the replica DST matches SRC, 1 when they differ, 2 on a bad command line
// or a tree it cannot read.
package main

import (
	"fmt"
	"os"

	"github.com/georep/georep/internal/testutil/oracle"
)

func main() {
	r, err := oracle.Main(os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "treeverify:", err)
		os.Exit(2)
	}
	if !r.OK() {
		os.Exit(1)
	}
}
