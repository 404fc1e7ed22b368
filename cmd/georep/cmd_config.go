package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/georep/georep/internal/cli"
	"github.com/georep/georep/internal/session"
)

func init() {
	register(command{name: "config", summary: "show or change a session's validated configuration", run: runConfig})
}

func configHelp() string {
	var b strings.Builder
	b.WriteString(`Shows or changes a session's configuration (kept in the session's
config.toml; only what differs from the defaults is stored). An unknown key
or a bad value is refused with the valid keys or values. A running daemon
applies a change at once: the session's worker restarts (except for
log-level), as Gluster restarts a session on a config change.

  georep config NAME                 every key with its value
  georep config NAME KEY             one value
  georep config NAME KEY VALUE       set (words after KEY are joined: ssh-command ssh -p 2222)
  georep config NAME --reset KEY     back to the default

keys:
`)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, n := range session.KeyNames() {
		k := session.Keys[n]
		def := k.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "  %s\t%s, default %s\t%s\n", n, k.Kind, def, k.Help)
	}
	tw.Flush()
	b.WriteString("\nexample:\n  georep config backup bandwidth-limit 20M\n  georep config backup exclude tmp,cache\n  georep config backup --reset exclude")
	return b.String()
}

func runConfig(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $GEOREP_STATE_DIR or /var/lib/georep)")
	reset := fs.String("reset", "", "reset KEY to its default")
	asJSON := fs.Bool("json", false, "JSON output (listing)")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep config NAME [KEY [VALUE]] | NAME --reset KEY", configHelp())
		}
		return err
	}
	if len(pos) < 1 {
		return cli.Usagef("usage: georep config NAME [KEY [VALUE]] | NAME --reset KEY")
	}
	store := session.Store{Root: cli.StateDir(*stateDir)}
	name := pos[0]
	if *reset != "" {
		if len(pos) != 1 {
			return cli.Usagef("--reset KEY takes no other argument")
		}
		return configChange(ctx, store, name, *reset, nil)
	}
	switch len(pos) {
	case 1:
		sess, err := store.Load(name)
		if err != nil {
			return err
		}
		if *asJSON {
			m := map[string]string{}
			for _, n := range session.KeyNames() {
				m[n], _, _ = sess.Get(n)
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(m)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		for _, n := range session.KeyNames() {
			v, set, _ := sess.Get(n)
			note := "(default)"
			if set {
				note = "(set)"
			}
			if v == "" {
				v = `""`
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n, v, note)
		}
		return tw.Flush()
	case 2:
		sess, err := store.Load(name)
		if err != nil {
			return err
		}
		v, _, err := sess.Get(pos[1])
		if err != nil {
			return err
		}
		fmt.Println(v)
		return nil
	}
	value := strings.Join(pos[2:], " ")
	return configChange(ctx, store, name, pos[1], &value)
}

// configChange sets (value != nil) or resets a key and tells the daemon.
func configChange(ctx context.Context, store session.Store, name, key string, value *string) error {
	k, err := session.LookupKey(key)
	if err != nil {
		return err
	}
	var old, now string
	changed := false
	if _, err := store.Update(name, func(s *session.Session) error {
		old, _, _ = s.Get(k.Name)
		if value != nil {
			if err := s.Set(k.Name, *value); err != nil {
				return err
			}
		} else {
			s.Reset(k.Name)
		}
		now, _, _ = s.Get(k.Name)
		changed = old != now
		return nil
	}); err != nil {
		return err
	}
	if !changed {
		fmt.Printf("%s: %s = %s (unchanged)\n", name, k.Name, now)
		return nil
	}
	_, live, err := notifyDaemon(ctx, store, name)
	if err != nil {
		return fmt.Errorf("config updated, but the daemon failed to apply it: %w", err)
	}
	fmt.Printf("%s: %s = %s (was %s)\n", name, k.Name, now, old)
	if live {
		if session.RestartKey(k.Name) {
			fmt.Println("applied: the session's worker restarted if it was running")
		} else {
			fmt.Println("applied")
		}
	}
	return nil
}
