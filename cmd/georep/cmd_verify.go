package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/verify"
)

func init() {
	register(command{name: "verify", summary: "compare SRC with its replica DST; exit 1 on any difference", run: runVerify})
}

const verifyHelp = `Compares the trees as a replica must match its primary: presence, type,
content (SHA-256), permission bits, owner and group, mtime, symlink target,
device numbers, user/security xattrs and POSIX ACLs, and hardlink groups.
georep's private .georep at the replica's root is ignored. Prints the first
differences and a count per kind; exits 0 only when the trees match.

example:
  georep verify /srv/data /backup/data
  georep verify /srv/data /backup/data --fake-super   # replica made by a non-root secondary`

func runVerify(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var o verify.Options
	var excludes cli.StringList
	fake := fs.Bool("fake-super", false, "read owners and special files of the replica from user.georep.stat xattrs")
	fs.BoolVar(&o.NoOwner, "no-owner", false, "do not compare owner and group")
	fs.BoolVar(&o.NoXattrs, "no-xattrs", false, "do not compare xattrs and ACLs")
	fs.BoolVar(&o.MtimeNS, "mtime-ns", false, "compare mtimes to the nanosecond")
	fs.BoolVar(&o.DirMtime, "dir-mtime", false, "compare directory mtimes too")
	fs.IntVar(&o.Show, "show", 20, "differences to print")
	fs.Var(&excludes, "exclude", "top-level name to ignore on both sides (repeatable)")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep verify SRC DST [flags]", verifyHelp)
		}
		return err
	}
	if len(pos) != 2 {
		return cli.Usagef("need SRC and DST")
	}
	o.Excludes = excludes
	dst, err := transport.ParseDestination(pos[1])
	if err != nil {
		return cli.Usagef("%v", err)
	}
	if dst.Host != "" {
		return fmt.Errorf("verify of a remote replica: run 'georep verify' on the secondary host against a copy, or mount it; remote verify is not built yet")
	}
	replica := verify.Local(dst.Path)
	if *fake {
		replica = verify.LocalFakeSuper(dst.Path)
	}
	rep, err := verify.Compare(ctx, verify.Local(pos[0]), replica, o)
	if err != nil {
		return err
	}
	rep.Print(os.Stdout, o.ShowCount())
	if !rep.OK() {
		return errExit1
	}
	return nil
}
