// Command georep replicates a directory tree from a primary to secondaries,
// one way, asynchronously, over SSH or to a local path. Each verb lives in
// its own file; the work is done by the internal packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/georep/georep/internal/cli"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

// usage lists the commands: on stdout when asked for (--help), on stderr
// after a mistake.
func usage(w io.Writer) {
	fmt.Fprintf(w, "georep replicates a directory tree to secondaries (local or over SSH), continuously or once.\n\nusage: georep COMMAND [ARGS] [FLAGS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n'georep COMMAND --help' shows a command's flags and an example.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	if name == "version" || name == "--version" {
		fmt.Println("georep", version())
		return
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		stopProfile := startProfile(name)
		err := c.run(ctx, os.Args[2:])
		stopProfile()
		stop()
		switch {
		case err == nil:
			return
		case errors.Is(err, flag.ErrHelp):
			return
		case errors.Is(err, cli.ErrUsage):
			fmt.Fprintf(os.Stderr, "georep %s: %v\n", name, err)
			os.Exit(2)
		case errors.Is(err, errExit1):
			os.Exit(1)
		default:
			fmt.Fprintf(os.Stderr, "georep %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "georep: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

// errExit1 ends a command with status 1 after it printed its own message.
var errExit1 = errors.New("exit 1")
