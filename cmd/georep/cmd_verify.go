package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/verify"
	"github.com/georep/georep/internal/worker"
)

func init() {
	register(command{name: "verify", summary: "compare SRC with its replica DST; exit 1 on any difference", run: runVerify})
}

const verifyHelp = `Compares the trees as a replica must match its primary: presence, type,
content (SHA-256), permission bits, owner and group, mtime, symlink target,
device numbers, user/security xattrs and POSIX ACLs, and hardlink groups.
georep's private .georep at the replica's root is ignored. Prints the first
differences and a count per kind; exits 0 only when the trees match.

DST is a local path or [user@]host:/path. A remote replica is read by the
secondary agent, started over ssh as for 'georep sync': it walks the replica
beneath its root and hashes file content there, so only metadata and
digests cross the network.

example:
  georep verify /srv/data /backup/data
  georep verify /srv/data /backup/data --fake-super   # replica made by a non-root secondary
  georep verify /srv/data backup@dr-site:/srv/data --ssh-command "ssh -p 2222"`

func runVerify(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var o verify.Options
	var excludes cli.StringList
	fake := fs.Bool("fake-super", false, "read owners and special files of the replica from user.georep.stat xattrs")
	fs.BoolVar(&o.NoOwner, "no-owner", false, "do not compare owner and group")
	fs.BoolVar(&o.NoXattrs, "no-xattrs", false, "do not compare xattrs and ACLs")
	fs.BoolVar(&o.NoACLs, "no-acls", false, "do not compare POSIX ACLs")
	fs.BoolVar(&o.MtimeNS, "mtime-ns", false, "compare mtimes to the nanosecond")
	fs.BoolVar(&o.DirMtime, "dir-mtime", false, "compare directory mtimes too")
	fs.IntVar(&o.Show, "show", 20, "differences to print")
	var excludeFrom cli.StringList
	fs.Var(&excludes, "exclude", "rsync exclude `PATTERN` left out on both sides (repeatable; as georep sync --exclude)")
	fs.Var(&excludeFrom, "exclude-from", "read exclude patterns from `FILE`")
	sshCommand := fs.String("ssh-command", "", `ssh command for a remote DST, e.g. "ssh -p 2222 -i KEY" (default ssh)`)
	remoteGeorep := fs.String("remote-georep", "", "georep command on the secondary host (default georep)")
	jobs := fs.Int("jobs", 0, "files hashed in parallel on a remote secondary (default fitted to its machine)")
	verbose := fs.Bool("v", false, "log details to stderr")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep verify SRC DST [flags]", verifyHelp)
		}
		return err
	}
	if err := cli.WantSrcDst(pos); err != nil {
		return cli.Usagef("%v (see georep verify --help)", err)
	}
	if o.Excludes, err = cli.ExcludeRules(excludes, excludeFrom, os.Stdin); err != nil {
		return err
	}
	dst, err := transport.ParseDestination(pos[1])
	if err != nil {
		return cli.Usagef("%v", err)
	}
	replica := verify.Local(dst.Path)
	if *fake {
		replica = verify.LocalFakeSuper(dst.Path)
	}
	if dst.Host != "" {
		log := cli.Logger(os.Stderr, *verbose, "text")
		started := time.Now()
		replica = verify.Remote(verify.RemoteConfig{
			Name:      dst.String(),
			FakeSuper: *fake,
			Jobs:      *jobs,
			// The handshake carries SRC's root ID, as a sync's does: the
			// agent keeps its index for that primary.
			Connect: func(ctx context.Context) (verify.RemoteSession, error) {
				sess, err := worker.Connect(ctx, worker.Config{ReadOnly: true, Source: pos[0], Dest: dst, SSHCommand: *sshCommand,
					RemoteGeorep: *remoteGeorep, Logger: log})
				if err != nil {
					return nil, err
				}
				return sess, nil
			},
			Done: func(st verify.RemoteStats) {
				log.Info("replica listed by its agent", "entries", st.Items, "hashed_bytes", st.HashedBytes,
					"wire_bytes", st.WireBytes, "seconds", time.Since(started).Seconds())
			},
		})
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
