package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/secondary"
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
	fs.StringVar(&f.bwlimit, "bwlimit", "", "cap the bytes per second sent to the secondary, e.g. 20M or 500k (0 = none)")
}

func (f *transferFlags) apply(cfg *worker.Config) error {
	if _, _, err := protocol.ParseCompression(f.compress); err != nil {
		return err
	}
	n, err := parseRate(f.bwlimit)
	if err != nil {
		return err
	}
	cfg.Compression, cfg.BandwidthLimit = f.compress, n
	return nil
}

// parseRate reads a byte rate: a number with an optional k, M or G suffix
// (powers of 1024) and an optional trailing "B" or "/s".
func parseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "/s"), "B")
	if t == "" {
		return 0, nil
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult > 1 {
		t = t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bandwidth limit %q: want bytes per second, e.g. 20M or 500k", s)
	}
	return int64(v * float64(mult)), nil
}

// The agent's stdio pipes (made by sshd) get large buffers before anything
// is read. (Belongs in runSecondary; kept here so that file stays as is.)
func init() {
	if len(os.Args) > 1 && os.Args[1] == "secondary" {
		secondary.EnlargeStdio()
	}
}
