package workload

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Usage is the command line Main takes (workload.py's).
const Usage = `usage:
  populate DIR [--files N] [--dirs D] [--large K] [--large-mib M] [--seed S]
  churn DIR [--scale X] [--seed S]
  single DIR NAME`

// ErrUsage marks a command line Main cannot run.
var ErrUsage = errors.New("usage")

// Main runs one command line of workload.py's (its first word is populate,
// churn or single; options may stand before or after DIR, as --opt V or
// --opt=V) and prints what it did to out, as workload.py does. A bad command
// line is an error wrapping ErrUsage.
func Main(args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", ErrUsage, Usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "populate":
		o := DefaultPopulate
		var seed int64 = int64(o.Seed)
		pos, err := parseArgs(rest, map[string]any{
			"files": &o.Files, "dirs": &o.Dirs, "large": &o.Large, "large-mib": &o.LargeMiB, "seed": &seed,
		})
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: populate takes one DIR, got %q\n%s", ErrUsage, pos, Usage)
		}
		o.Seed = uint64(seed)
		got, err := Populate(pos[0], o)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "populated %s: %s\n", pos[0], got)
	case "churn":
		o := DefaultChurn
		var seed int64 = int64(o.Seed)
		pos, err := parseArgs(rest, map[string]any{"scale": &o.Scale, "seed": &seed})
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: churn takes one DIR, got %q\n%s", ErrUsage, pos, Usage)
		}
		o.Seed = uint64(seed)
		counts, err := Churn(pos[0], o)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "churned %s: %s\n", pos[0], counts)
	case "single":
		pos, err := parseArgs(rest, nil)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return fmt.Errorf("%w: single takes DIR NAME, got %q\n%s", ErrUsage, pos, Usage)
		}
		return Single(pos[0], pos[1])
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, cmd, Usage)
	}
	return nil
}

// parseArgs splits args into positionals and --name V / --name=V options
// stored into the *int, *int64 or *float64 named in opts. "--" ends the
// options.
func parseArgs(args []string, opts map[string]any) (pos []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if !strings.HasPrefix(a, "--") {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		dst, ok := opts[name]
		if !ok {
			return nil, fmt.Errorf("%w: unknown option --%s\n%s", ErrUsage, name, Usage)
		}
		if !hasVal {
			if i+1 == len(args) {
				return nil, fmt.Errorf("%w: --%s needs a value", ErrUsage, name)
			}
			i++
			val = args[i]
		}
		switch d := dst.(type) {
		case *int:
			*d, err = strconv.Atoi(val)
		case *int64:
			*d, err = strconv.ParseInt(val, 10, 64)
		case *float64:
			*d, err = strconv.ParseFloat(val, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: --%s %q: %v", ErrUsage, name, val, err)
		}
	}
	return pos, nil
}
