package main

import (
	"context"
	"flag"
	"os"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/cli"
)

func init() {
	register(command{name: "changelog", summary: "inspect changelog files (changelog dump FILE)", run: runChangelog})
}

func runChangelog(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("changelog", flag.ContinueOnError)
	pos, err := cli.Parse(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			cli.PrintHelp(os.Stdout, fs, "georep changelog dump FILE...", "Prints a changelog's header, records (names quoted) and trailer, after checking\nits checksum; a corrupt or truncated file is an error.\n\nexample:\n  georep changelog dump /var/lib/georep/sessions/s1/changelogs/CHANGELOG.00000000000000000042")
		}
		return err
	}
	if len(pos) < 2 || pos[0] != "dump" {
		return cli.Usagef("usage: georep changelog dump FILE...")
	}
	for _, p := range pos[1:] {
		if err := changelog.Dump(os.Stdout, p); err != nil {
			return err
		}
	}
	return nil
}
