package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
)

// LogOptions are the flags of "takeover log".
type LogOptions struct {
	Output string
}

func newLogCommand(g *globalOptions) *cobra.Command {
	var o LogOptions
	cmd := &cobra.Command{
		Use:   "log RUN",
		Short: "Print a run's journal, or its incident timeline",
		Long: `Log prints every journal record of a run. --output md prints an incident
timeline in Markdown, ready to paste into a status page or a post-mortem, with
machine time and human (approval) time reported apart.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLog(cmd.Context(), o, g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.Output, "output", "text", "text, json or md")
	return cmd
}

func runLog(ctx context.Context, o LogOptions, g *globalOptions, run string) error {
	switch o.Output {
	case "text", "json", "md":
	default:
		return usagef("--output %q: want text, json or md", o.Output)
	}
	st, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	recs, err := st.Records(ctx, run)
	if err != nil {
		return withHint(fmt.Errorf("run %s: %w", run, err), `"takeover status" lists the runs`)
	}
	switch o.Output {
	case "json":
		return writeJSON(g.stdout, recs)
	case "md":
		v, err := steps.Fold(recs)
		if err != nil {
			return err
		}
		writeTimeline(g.stdout, v)
		return nil
	}
	for _, r := range recs {
		line := fmt.Sprintf("%4d %s %-12s %-22s", r.Seq, r.At.Local().Format("15:04:05.000"), r.Phase, r.Step)
		if r.Attempt > 0 {
			line += fmt.Sprintf(" #%d", r.Attempt)
		}
		if len(r.Out) > 0 && r.Phase != state.PhaseRunStarted {
			line += " " + string(r.Out)
		}
		if r.Err != "" {
			line += " error: " + r.Err
		}
		fmt.Fprintln(g.stdout, strings.TrimRight(line, " "))
	}
	return nil
}

// humanTime sums the approval waits journalled by confirm steps.
func humanTime(v *steps.RunView) time.Duration {
	var d time.Duration
	for _, s := range v.Steps {
		if raw, ok := s.Notes["approval"]; ok {
			var a struct {
				Waited time.Duration `json:"waitedNs"`
			}
			if json.Unmarshal(raw, &a) == nil {
				d += a.Waited
			}
		}
	}
	return d
}

// writeTimeline renders an incident timeline in Markdown.
func writeTimeline(w io.Writer, v *steps.RunView) {
	h := v.Header
	start := h.Created
	outcome := v.Outcome
	if outcome == "" {
		outcome = "unfinished"
	}
	fmt.Fprintf(w, "## Takeover %s — %s (%s)\n\n", h.Run, h.Runbook, h.Mode)
	fmt.Fprintf(w, "- Started %s by %s on %s\n- Outcome: **%s**\n", start.UTC().Format("2006-01-02 15:04:05 MST"), h.Who, h.Host, outcome)
	total := v.Updated.Sub(start)
	human := humanTime(v)
	fmt.Fprintf(w, "- Total %s: machine %s, waiting for people %s\n\n", fmtDur(total), fmtDur(total-human), fmtDur(human))
	fmt.Fprintln(w, "| time (UTC) | +elapsed | step | event |")
	fmt.Fprintln(w, "|---|---|---|---|")
	recs := append([]state.Record(nil), v.Records...)
	sort.SliceStable(recs, func(a, b int) bool { return recs[a].Seq < recs[b].Seq })
	for _, r := range recs {
		var ev string
		switch r.Phase {
		case state.PhaseRunStarted:
			ev = "run started"
		case state.PhaseIntent:
			ev = fmt.Sprintf("started (attempt %d)", r.Attempt)
		case state.PhaseDone:
			ev = "done"
		case state.PhaseFailed:
			ev = "**failed**: " + r.Err
		case state.PhaseSkipped:
			ev = "skipped by operator"
		case state.PhaseWaiting:
			var w struct {
				On string `json:"on"`
			}
			if json.Unmarshal(r.Out, &w) == nil && w.On != "" {
				ev = "waiting on " + w.On
			} else {
				ev = "waiting: " + string(r.Out)
			}
		case state.PhaseUndoIntent:
			ev = "undo started"
		case state.PhaseUndone:
			ev = "undone"
		case state.PhaseRunFinished:
			var o struct {
				Outcome string `json:"outcome"`
			}
			_ = json.Unmarshal(r.Out, &o)
			ev = "**run finished: " + o.Outcome + "**"
		default:
			continue // notes are in --output json
		}
		fmt.Fprintf(w, "| %s | +%s | %s | %s |\n", r.At.UTC().Format("15:04:05"), fmtDur(r.At.Sub(start)), r.Step, mdCell(ev))
	}
}

// printReport prints a drill's report: per-step timings, the takeover's
// time (start to commit, people's waits apart) against the runbook's target
// RTO, and the totals.
func printReport(ctx context.Context, g *globalOptions, st state.Store, run string, targetRTO time.Duration) error {
	v, err := steps.LoadRun(ctx, st, run)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "\ndrill report %s\n", run)
	for _, s := range v.Ordered() {
		fmt.Fprintf(g.stdout, "  %-26s %-8s %s\n", s.Name, s.State, fmtDur(s.Duration))
	}
	human := humanTime(v)
	for _, r := range v.Records {
		if r.Step == steps.StepCommit && r.Phase == state.PhaseDone {
			took := r.At.Sub(v.Header.Created) - human
			verdict := ""
			if targetRTO > 0 {
				verdict = fmt.Sprintf(" against a target RTO of %s: met", fmtDur(targetRTO))
				if took > targetRTO {
					verdict = fmt.Sprintf(" against a target RTO of %s: MISSED by %s", fmtDur(targetRTO), fmtDur(took-targetRTO))
				}
			}
			fmt.Fprintf(g.stdout, "  takeover (start to commit, without people's waits) %s%s\n", fmtDur(took), verdict)
			break
		}
	}
	total := v.Updated.Sub(v.Header.Created)
	fmt.Fprintf(g.stdout, "  total %s (machine %s, people %s), outcome %s\n", fmtDur(total), fmtDur(total-human), fmtDur(human), v.Outcome)
	return nil
}

// mdCell keeps a table cell on one line: pipes escaped, line breaks as <br>.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "<br>")
}
