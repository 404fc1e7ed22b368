package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// logfmt splits one line of slog's text format into its keys and values.
func logfmt(line string) map[string]string {
	out := map[string]string{}
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			return out
		}
		k := line[:eq]
		line = line[eq+1:]
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return out
			}
			out[k], _ = strconv.Unquote(q)
			line = line[len(q):]
			continue
		}
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			sp = len(line)
		}
		out[k] = line[:sp]
		line = line[sp:]
	}
	return out
}

// jrBreakdown says where the time of a restart at `at` went, from the
// session's log: the new worker's start, its attach to the journal process,
// its connection to the secondary (with the agent's index load), the
// backlog's replay until it first caught up, and the probe on the
// secondary at lat.
func jrBreakdown(state string, at time.Time, lat time.Duration) string {
	f, err := os.Open(filepath.Join(state, "sessions", jrSession, "georep.log"))
	if err != nil {
		return "no breakdown: " + err.Error()
	}
	defer f.Close()
	var caught, agent map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		kv := logfmt(sc.Text())
		ts, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil || ts.Before(at) {
			continue
		}
		switch kv["msg"] {
		case "caught up":
			if caught == nil {
				caught = kv
			}
		case "session started":
			if agent == nil && kv["index_load"] != "" {
				agent = kv
			}
		}
	}
	if caught == nil {
		return "no breakdown: the new worker logged no \"caught up\""
	}
	ws, err := time.Parse(time.RFC3339Nano, caught["worker_started"])
	if err != nil {
		return "no breakdown: " + err.Error()
	}
	idx := "?"
	if agent != nil {
		idx = agent["index_load"]
	}
	start := ws.Sub(at)
	cu, _ := time.ParseDuration(caught["caught_up_after"])
	return fmt.Sprintf("breakdown from the restart: worker started +%s; attached to the journal +%s; connected (agent's index load %s) +%s; "+
		"first batch applied +%s (plan %s, execute %s, commit %s); %s batches / %s changelogs / %s records replayed in %s; caught up +%s; probe on the secondary +%s",
		start.Round(time.Millisecond), jrPlus(start, caught["attached_after"]), idx, jrPlus(start, caught["connected_after"]),
		jrPlus(start, caught["first_batch_after"]), caught["first_plan"], caught["first_execute"], caught["first_commit"], caught["batches"], caught["changelogs"], caught["records"], caught["replay"],
		(start + cu).Round(time.Millisecond), lat.Round(time.Millisecond))
}

// jrPlus is an offset from the worker's start as one from the restart.
func jrPlus(start time.Duration, after string) string {
	d, err := time.ParseDuration(after)
	if err != nil || d == 0 {
		return "-"
	}
	return (start + d).Round(time.Millisecond).String()
}
