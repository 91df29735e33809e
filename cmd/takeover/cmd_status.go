package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
)

// StatusOptions are the flags of "takeover status".
type StatusOptions struct {
	Output string
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var o StatusOptions
	cmd := &cobra.Command{
		Use:   "status [RUN]",
		Short: "Show runs and locks, or one run step by step",
		Long: `Status lists the runs in the state store with their outcome and the locks
currently held; with a RUN it shows that run's steps, their state, attempts,
durations and errors. It only reads.
` + exitStatusHelp,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run := ""
			if len(args) == 1 {
				run = args[0]
			}
			return runStatus(cmd.Context(), o, g, run)
		},
	}
	cmd.Flags().StringVar(&o.Output, "output", "text", "text or json")
	return cmd
}

type runSummary struct {
	Run     string    `json:"run"`
	Runbook string    `json:"runbook"`
	Mode    string    `json:"mode"`
	Who     string    `json:"who"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Outcome string    `json:"outcome"`
	Current string    `json:"current,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func summarize(v *steps.RunView) runSummary {
	s := runSummary{Run: v.Header.Run, Runbook: v.Header.Runbook, Mode: v.Header.Mode, Who: v.Header.Who, Host: v.Header.Host,
		Created: v.Header.Created, Updated: v.Updated, Outcome: v.Outcome}
	if s.Outcome == "" {
		s.Outcome = "unfinished"
		if v.Rollback {
			s.Outcome = "rolling-back"
		}
	}
	for _, st := range v.Ordered() {
		switch st.State {
		case steps.StateFailed:
			s.Current, s.Error = st.Name+" failed", st.Err
		case steps.StateRunning, steps.StateWaiting, steps.StateUndoing:
			if s.Current == "" {
				s.Current = st.Name + " " + string(st.State)
			}
		}
	}
	return s
}

func runStatus(ctx context.Context, o StatusOptions, g *globalOptions, run string) error {
	if o.Output != "text" && o.Output != "json" {
		return usagef("--output %q: want text or json", o.Output)
	}
	st, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	locks, err := st.Locks(ctx)
	if err != nil {
		return fmt.Errorf("list locks: %w", err)
	}
	if run != "" {
		v, err := steps.LoadRun(ctx, st, run)
		if err != nil {
			return withHint(fmt.Errorf("run %s: %w", run, err), `"takeover status" lists the runs`)
		}
		var held []state.LockInfo
		for _, l := range locks {
			if l.Run == run {
				held = append(held, l)
			}
		}
		if o.Output == "json" {
			return writeJSON(g.stdout, map[string]any{"summary": summarize(v), "steps": v.Ordered(), "locks": held})
		}
		printRun(g.stdout, v, held)
		return nil
	}
	ids, err := st.Runs(ctx)
	if err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	var runs []runSummary
	for _, id := range ids {
		v, err := steps.LoadRun(ctx, st, id)
		if err != nil {
			runs = append(runs, runSummary{Run: id, Outcome: "unreadable", Error: err.Error()})
			continue
		}
		runs = append(runs, summarize(v))
	}
	if o.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"runs": runs, "locks": locks})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tRUNBOOK\tMODE\tOUTCOME\tSTARTED\tBY\tNOW")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Run, r.Runbook, r.Mode, r.Outcome, r.Created.Local().Format("2006-01-02 15:04:05"), r.Who+"@"+r.Host, r.Current)
	}
	tw.Flush()
	if len(runs) == 0 {
		fmt.Fprintf(g.stdout, "no runs in %s\n", g.State)
	}
	printLocks(g.stdout, locks)
	return nil
}

func printLocks(w io.Writer, locks []state.LockInfo) {
	if len(locks) == 0 {
		return
	}
	fmt.Fprintln(w, "\nLOCKS")
	now := time.Now()
	host, _ := os.Hostname()
	for _, l := range locks {
		stale := ""
		switch {
		case now.After(l.Expires):
			stale = "  (expired: stale)"
		case l.Host == host && l.PID > 0 && syscall.Kill(l.PID, 0) == syscall.ESRCH:
			stale = "  (holder process gone: stale, the next run takes it over)"
		}
		fmt.Fprintf(w, "  %s%s\n", l.String(), stale)
	}
}

func printRun(w io.Writer, v *steps.RunView, held []state.LockInfo) {
	s := summarize(v)
	fmt.Fprintf(w, "run %s  runbook %s  mode %s  by %s@%s  started %s\noutcome: %s\n\n", s.Run, s.Runbook, s.Mode, s.Who, s.Host,
		s.Created.Local().Format("2006-01-02 15:04:05"), s.Outcome)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tATTEMPT\tTOOK\tDETAIL")
	for _, st := range v.Ordered() {
		took := ""
		if st.Duration > 0 {
			took = fmtDur(st.Duration)
		}
		detail := st.Err
		if st.Waiting != "" {
			detail = "waiting on " + st.Waiting
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", st.Name, st.State, st.Attempt, took, detail)
	}
	tw.Flush()
	printLocks(w, held)
	if v.Outcome == "" {
		fmt.Fprintf(w, "\nnext: \"takeover resume %s\" to continue, or \"takeover rollback %s\" to undo\n", s.Run, s.Run)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
