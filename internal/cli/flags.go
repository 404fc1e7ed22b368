// Package cli owns what the georep commands share: flags that may stand
// before or after positional arguments (as rsync users expect), the state
// directory rule, logging setup, and the exit-code conventions.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/georep/georep/internal/filter"
)

// DefaultStateDir is used when neither --state-dir nor $GEOREP_STATE_DIR is set.
const DefaultStateDir = "/var/lib/georep"

// StateDir resolves the state directory: the flag, else $GEOREP_STATE_DIR,
// else /var/lib/georep.
func StateDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv("GEOREP_STATE_DIR"); v != "" {
		return v
	}
	return DefaultStateDir
}

// ErrUsage marks a command-line mistake (exit code 2).
var ErrUsage = errors.New("usage")

// Usagef returns a usage error with a message.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Parse parses flags that may appear anywhere among the positional
// arguments; "--" ends flag parsing.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, Usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" (consumed) or at the first positional.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// WantSrcDst checks the positional arguments of a SRC DST verb and says
// what is wrong with them.
func WantSrcDst(pos []string) error {
	switch {
	case len(pos) == 0:
		return errors.New("missing SRC and DST")
	case len(pos) == 1:
		return fmt.Errorf("missing DST after SRC %q", pos[0])
	case len(pos) > 2:
		return fmt.Errorf("%d arguments given, want only SRC and DST; unexpected: %s (a path with spaces needs quotes; a flag's value follows the flag)",
			len(pos), quoteAll(pos[2:]))
	}
	return nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, " ")
}

// ExcludeRules gathers the exclude rules of --exclude PATTERN (in order)
// and of each --exclude-from FILE ("-" is standard input), checked.
func ExcludeRules(patterns, files []string, stdin io.Reader) ([]string, error) {
	var out []string
	for _, p := range patterns {
		if err := filter.Validate(p); err != nil {
			return nil, Usagef("--exclude: %v", err)
		}
		out = append(out, p)
	}
	for _, name := range files {
		r := stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return nil, Usagef("--exclude-from: %v", err)
			}
			defer f.Close()
			r = f
		}
		ps, err := filter.ReadPatterns(r)
		if err != nil {
			return nil, Usagef("--exclude-from %s: %v", name, err)
		}
		out = append(out, ps...)
	}
	return out, nil
}

// StringList is a repeatable string flag.
type StringList []string

func (s *StringList) String() string     { return strings.Join(*s, ",") }
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }

// Logger builds the command's logger: text on stderr, at info with -v,
// warn otherwise; JSON with format "json".
func Logger(w io.Writer, verbose bool, format string) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	if v := os.Getenv("GEOREP_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// PrintHelp writes a command's help: usage line, description, flags.
func PrintHelp(w io.Writer, fs *flag.FlagSet, usage, text string) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", usage, strings.TrimSpace(text))
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}
