package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/compression"
	"github.com/georep/georep/internal/secondary"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/worker"
)

// transferFlags are the data-transfer settings of a sync or a run, with
// rsync 3.2's names: -z/--compress (a switch), --compress-level N,
// --compress-choice zstd|none, --bwlimit (alias of --bandwidth-limit).
// Without any of them compression is automatic (see package compression).
// runSync and runRun register them beside their own flags:
//
//	var tf transferFlags
//	tf.register(fs)
//	src, dst, err := parseSrcDst(fs, tf.oldForm(args), ...)
//	if err := tf.apply(&cfg); err != nil { return cli.Usagef("%v", err) }
type transferFlags struct {
	compress   compressSwitch
	noCompress bool
	level      optionalInt
	choice     string
	bwlimit    string
	rsyncBW    string // --bwlimit: a bare number is KiB/s, as in rsync
}

func (f *transferFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.compress, "compress", "compress file data on the wire whenever the data shrinks (rsync's -z); by default compression is automatic: on when the link is slower than the compressor")
	fs.Var(&f.compress, "z", "short for --compress")
	fs.BoolVar(&f.noCompress, "no-compress", false, "never compress (same as --compress-choice none)")
	fs.Var(&f.level, "compress-level", "zstd level `N`, fixed (1-2 fastest, 3-5 default, 6-9 better, 10-22 best; 0 = no compression); implies --compress")
	fs.StringVar(&f.choice, "compress-choice", "", "compression algorithm: zstd or none; zstd implies --compress")
	fs.StringVar(&f.bwlimit, "bandwidth-limit", "0", "cap the bytes per second sent to the secondary, e.g. 20M or 500K (0 = none)")
	fs.StringVar(&f.rsyncBW, "bwlimit", "", "as --bandwidth-limit, but a bare number is KiB per second, as in rsync (--bwlimit 1000 = 1000K)")
}

// compressSwitch is -z/--compress: a boolean flag that also takes the
// values of its old form (--compress=zstd, --compress zstd:2, as rewritten
// by oldForm), remembered in old for a note.
type compressSwitch struct {
	set, on bool
	old     string
}

func (c *compressSwitch) IsBoolFlag() bool { return true }

func (c *compressSwitch) String() string {
	if c == nil || !c.set {
		return ""
	}
	return strconv.FormatBool(c.on)
}

func (c *compressSwitch) Set(v string) error {
	if b, err := strconv.ParseBool(v); err == nil {
		c.set, c.on = true, b
		return nil
	}
	if isOldCompressValue(v) {
		c.set, c.on, c.old = true, v != "none" && v != "off", v
		return nil
	}
	return fmt.Errorf("--compress is a switch (rsync's -z); for a level use --compress-level N, for none --compress-choice none (got %q)", v)
}

// isOldCompressValue: the values --compress took before it became a
// switch.
func isOldCompressValue(v string) bool {
	s, err := compression.Parse(v)
	return err == nil && v != "" && v != "auto" && (s.Mode != compression.Auto)
}

// optionalInt is an int flag that knows whether it was given.
type optionalInt struct {
	set bool
	n   int
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.n)
}

func (o *optionalInt) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("want a number, got %q", v)
	}
	o.set, o.n = true, n
	return nil
}

// oldForm rewrites "--compress VALUE" (the flag's old form, when VALUE is
// one of its old values and not an existing path) to "--compress=VALUE",
// so that old command lines keep working; a bare --compress before SRC
// stays a switch and does not swallow SRC.
func (f *transferFlags) oldForm(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if (a == "--compress" || a == "-compress") && i+1 < len(args) && isOldCompressValue(args[i+1]) {
			if _, err := os.Lstat(args[i+1]); err != nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// note is what to tell a user of the old form, or "".
func (f *transferFlags) note() string {
	if f.compress.old == "" {
		return ""
	}
	return fmt.Sprintf("note: --compress %s is the old form; --compress (-z) is now a switch as in rsync, with --compress-level N and --compress-choice zstd|none", f.compress.old)
}

// setting turns the flags into a compression setting (compression.Parse's
// syntax) and a bandwidth limit in bytes per second.
func (f *transferFlags) setting() (comp string, bw int64, err error) {
	comp = "auto"
	switch {
	case f.compress.old != "":
		comp = f.compress.old
		if s, _ := compression.Parse(comp); s.Mode == compression.Never {
			comp = "none"
		}
	case f.compress.set && f.compress.on:
		comp = "zstd"
	case f.compress.set:
		comp = "none"
	}
	if f.noCompress {
		if f.compress.set && f.compress.on {
			return "", 0, fmt.Errorf("--compress and --no-compress contradict each other")
		}
		comp = "none"
	}
	switch f.choice {
	case "":
	case "zstd":
		if comp == "none" {
			return "", 0, fmt.Errorf("--compress-choice zstd and --no-compress contradict each other")
		}
		if comp == "auto" {
			comp = "zstd"
		}
	case "none":
		if comp != "auto" && comp != "none" || f.level.set && f.level.n != 0 {
			return "", 0, fmt.Errorf("--compress-choice none contradicts --compress and --compress-level")
		}
		comp = "none"
	default:
		return "", 0, fmt.Errorf("--compress-choice %q: georep compresses with zstd only (zstd or none)", f.choice)
	}
	if f.level.set {
		switch l := compression.FromZstdLevel(f.level.n); {
		case f.level.n < 0 || f.level.n > 22:
			return "", 0, fmt.Errorf("--compress-level %d: want 0 to 22 (zstd's levels; 0 = none)", f.level.n)
		case comp == "none" && l != compression.Off:
			return "", 0, fmt.Errorf("--compress-level %d contradicts --no-compress", f.level.n)
		default:
			comp = compression.Setting{Mode: compression.Fixed, Level: l}.String()
		}
	}
	if bw, err = session.ParseSize(strings.TrimSuffix(strings.TrimSpace(f.bwlimit), "/s")); err != nil {
		return "", 0, fmt.Errorf("bandwidth limit: %w", err)
	}
	if f.rsyncBW != "" {
		v := strings.TrimSuffix(strings.TrimSpace(f.rsyncBW), "/s")
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			v += "K"
		}
		if bw, err = session.ParseSize(v); err != nil {
			return "", 0, fmt.Errorf("--bwlimit: %w", err)
		}
	}
	return comp, bw, nil
}

func (f *transferFlags) apply(cfg *worker.Config) error {
	comp, bw, err := f.setting()
	if err != nil {
		return err
	}
	cfg.Compression, cfg.BandwidthLimit = comp, bw
	return nil
}

// The agent's stdio pipes (made by sshd) get large buffers before anything
// is read. (Belongs in runSecondary; kept here so that file stays as is.)
func init() {
	if len(os.Args) > 1 && os.Args[1] == "secondary" {
		secondary.EnlargeStdio()
	}
}
