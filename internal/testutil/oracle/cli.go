package oracle

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Usage is the command line Main takes (verify.py's, plus --no-acls and --no-mtime).
const Usage = "usage: SRC DST [--no-owner] [--no-xattrs] [--no-acls] [--mtime-ns] [--no-mtime] [--dir-mtime] [--exclude PATTERN ...] [--show N]"

// ErrUsage marks a command line Main cannot run.
var ErrUsage = errors.New("usage")

// Args is a parsed command line.
type Args struct {
	Src, Dst string
	Options
	Show int // differences printed before the summary (20)
}

// ParseArgs parses verify.py's command line: SRC DST and flags in any order,
// --exclude P (or --exclude=P) repeatable, "--" ending the flags.
func ParseArgs(args []string) (Args, error) {
	a := Args{Show: 20}
	var pos []string
	flags := map[string]*bool{
		"no-owner": &a.NoOwner, "no-xattrs": &a.NoXattrs, "no-acls": &a.NoACLs,
		"mtime-ns": &a.MtimeNs, "dir-mtime": &a.DirMtime, "no-mtime": &a.NoMtime,
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "--") {
			pos = append(pos, arg)
			continue
		}
		name, val, hasVal := strings.Cut(arg[2:], "=")
		if b, ok := flags[name]; ok {
			if hasVal {
				return Args{}, fmt.Errorf("%w: --%s takes no value\n%s", ErrUsage, name, Usage)
			}
			*b = true
			continue
		}
		if name != "exclude" && name != "show" {
			return Args{}, fmt.Errorf("%w: unknown option --%s\n%s", ErrUsage, name, Usage)
		}
		if !hasVal {
			if i+1 == len(args) {
				return Args{}, fmt.Errorf("%w: --%s needs a value", ErrUsage, name)
			}
			i++
			val = args[i]
		}
		if name == "exclude" {
			if _, err := ParsePattern(val); err != nil {
				return Args{}, fmt.Errorf("%w: --exclude: %w", ErrUsage, err)
			}
			a.Exclude = append(a.Exclude, val)
			continue
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return Args{}, fmt.Errorf("%w: --show %q: want a count", ErrUsage, val)
		}
		a.Show = n
	}
	if len(pos) != 2 {
		return Args{}, fmt.Errorf("%w: want SRC and DST, got %q\n%s", ErrUsage, pos, Usage)
	}
	a.Src, a.Dst = pos[0], pos[1]
	return a, nil
}

// Main runs one verify.py command line: it compares the trees, prints the
// report to out, and returns the report (nil with an error when the
// comparison could not be made or the command line is bad: ErrUsage).
func Main(args []string, out io.Writer) (*Report, error) {
	a, err := ParseArgs(args)
	if err != nil {
		return nil, err
	}
	r, err := Compare(a.Src, a.Dst, a.Options)
	if err != nil {
		return nil, err
	}
	return r, r.Write(out, a.Show)
}
