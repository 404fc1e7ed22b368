package service

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteStatus renders a journal process's status for humans.
func WriteStatus(w io.Writer, st *ServerStatus) error {
	fmt.Fprintf(w, "journal process pid %d (georep %s), up since %s, size limit %d bytes per root\n",
		st.PID, st.Version, st.Started.Format(time.DateTime), st.MaxBytes)
	for _, g := range st.Groups {
		fmt.Fprintf(w, "filesystem %s: %d roots, %d events, %d overflows, group since %s\n", g.FS, g.Roots, g.Events, g.Overflows, g.Since.Format(time.DateTime))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tSESSIONS\tCOVERED SINCE\tVOUCHED\tLAST SEQ\tCHANGELOGS\tBYTES\tERROR")
	for _, r := range st.Roots {
		errs := r.Error
		if errs == "" {
			errs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Path, strings.Join(r.Consumers, ","), fmtTime(r.CoveredSince), fmtTime(r.Vouched),
			r.LastSeq, r.Changelogs, r.Bytes, errs)
	}
	return tw.Flush()
}

// WriteStatusJSON renders it as JSON.
func WriteStatusJSON(w io.Writer, st *ServerStatus) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return t.Format("2006-01-02 15:04:05.000")
}
