package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/secondary"
)

func init() {
	register(command{name: "secondary", summary: "the secondary agent (started by the primary over ssh)", run: runSecondary})
}

const secondaryHelp = `Serves one primary on stdin/stdout, applying its operations beneath --root
and nowhere else. The primary starts it over ssh; you run it by hand only to
print an authorized_keys line that lets a key run nothing but this agent:

example:
  georep secondary --root /srv/replica --print-authorized-key ~/.ssh/georep.pub >> ~/.ssh/authorized_keys`

func runSecondary(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("secondary", flag.ContinueOnError)
	root := fs.String("root", "", "the directory this agent may write in (required)")
	fake := fs.Bool("fake-super", false, "store owners and special files in user.georep.stat xattrs")
	keyFile := fs.String("print-authorized-key", "", "print an authorized_keys line for this public key file, restricted to this agent, and exit")
	idle := fs.Duration("idle-timeout", 2*time.Minute, "end the session when the primary is silent this long")
	verbose := fs.Bool("v", false, "log to stderr")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep secondary --root DIR [flags]", secondaryHelp)
		}
		return err
	}
	if len(pos) != 0 {
		return cli.Usagef("unexpected arguments %q", pos)
	}
	if *root == "" {
		return cli.Usagef("--root is required")
	}
	if *keyFile != "" {
		return printAuthorizedKey(*keyFile, *root, *fake)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// The agent's buffers are bounded (secondary.MaxBufferedBytes);
		// a soft limit makes the collector return freed frames promptly.
		debug.SetMemoryLimit(secondary.MemoryLimit)
	}
	log := cli.Logger(os.Stderr, *verbose, "text")
	rwc := stdio{Reader: os.Stdin, Writer: os.Stdout}
	go func() {
		// A signal ends the session; should a blocked system call keep
		// the agent (and its lock on the root) past a grace period, the
		// process goes. Nothing is lost: the stime on record is older.
		<-ctx.Done()
		time.Sleep(stopGrace)
		log.Error("the agent did not stop after the signal; exiting", "grace", stopGrace)
		os.Exit(1)
	}()
	return secondary.Serve(ctx, rwc, secondary.Options{Root: *root, Software: version(), Logger: log, FakeSuper: *fake, IdleTimeout: *idle})
}

// stopGrace is how long a signalled agent may take to stop.
const stopGrace = 30 * time.Second

type stdio struct {
	io.Reader
	io.Writer
}

func (stdio) Close() error { os.Stdin.Close(); return os.Stdout.Close() }

func printAuthorizedKey(keyFile, root string, fake bool) error {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		self = "georep"
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	line, err := secondary.AuthorizedKeyLine(b, self, absRoot, fake)
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	fmt.Println(line)
	return nil
}
