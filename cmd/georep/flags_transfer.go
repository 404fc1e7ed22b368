package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/secondary"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/worker"
)

// transferFlags are the data-transfer settings of a sync (or a session):
// compression and a bandwidth cap. runSync registers them beside its own
// flags and applies them to the worker.Config:
//
//	var tf transferFlags
//	tf.register(fs)
//	...
//	if err := tf.apply(&cfg); err != nil { return cli.Usagef("%v", err) }
type transferFlags struct {
	compress string
	bwlimit  string
}

func (f *transferFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.compress, "compress", "none", "compress file data on the wire: none, zstd, or zstd:1..4 (1 fastest)")
	fs.StringVar(&f.bwlimit, "bandwidth-limit", "0", "cap the bytes per second sent to the secondary, e.g. 20M or 500K (0 = none)")
}

func (f *transferFlags) apply(cfg *worker.Config) error {
	if _, _, err := protocol.ParseCompression(f.compress); err != nil {
		return err
	}
	n, err := session.ParseSize(strings.TrimSuffix(strings.TrimSpace(f.bwlimit), "/s"))
	if err != nil {
		return fmt.Errorf("bandwidth limit: %w", err)
	}
	cfg.Compression, cfg.BandwidthLimit = f.compress, n
	return nil
}

// The agent's stdio pipes (made by sshd) get large buffers before anything
// is read. (Belongs in runSecondary; kept here so that file stays as is.)
func init() {
	if len(os.Args) > 1 && os.Args[1] == "secondary" {
		secondary.EnlargeStdio()
	}
}
