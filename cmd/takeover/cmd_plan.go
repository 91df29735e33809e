package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps"
)

// PlanOptions are the flags of "takeover plan".
type PlanOptions struct {
	providerOptions
	Mode    string
	Output  string
	NoDrift bool
}

func newPlanCommand(g *globalOptions) *cobra.Command {
	var o PlanOptions
	cmd := &cobra.Command{
		Use:   "plan RUNBOOK",
		Short: "Show what a run would do, and check the runbook against the provider",
		Long: `Plan prints the steps a run of RUNBOOK would take in the given mode, in
order, with their dependencies, the provider calls and remote commands each
makes, what each checks, and the expected duration of each and of the whole.
It then compares the runbook with the provider's inventory using read-only
calls (servers exist, IPs routed to the primary and movable to the spare,
rescue boot present) and prints any drift as a diff. It changes nothing.
Exits 0 when there is no drift, 1 when there is.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd.Context(), o, g, args[0])
		},
	}
	o.providerOptions.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.Mode, "mode", "disaster", "disaster, planned or drill")
	cmd.Flags().StringVar(&o.Output, "output", "text", "text or json")
	cmd.Flags().BoolVar(&o.NoDrift, "no-drift", false, "do not call the provider (offline review)")
	return cmd
}

type planStep struct {
	Name      string        `json:"name"`
	After     []string      `json:"after,omitempty"`
	Server    string        `json:"server,omitempty"`
	Finalizer bool          `json:"finalizer,omitempty"`
	Summary   string        `json:"summary"`
	Calls     []string      `json:"calls,omitempty"`
	Checks    string        `json:"checks,omitempty"`
	Expected  time.Duration `json:"expectedNs"`
}

func runPlan(ctx context.Context, o PlanOptions, g *globalOptions, path string) error {
	mode, err := runbooks.ParseMode(o.Mode)
	if err != nil {
		return usagef("--mode: %w", err)
	}
	if o.Output != "text" && o.Output != "json" {
		return usagef("--output %q: want text or json", o.Output)
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	rb, err := loadRunbook(path)
	if err != nil {
		return err
	}
	plan, err := steps.BuildPlan(rb, mode)
	if err != nil {
		return err
	}
	// Forecast from past runs of this runbook (drills), where there are any.
	var hist steps.History
	if st, err := g.openStore(ctx, log); err == nil {
		hist, _ = steps.LoadHistory(ctx, st, rb.Name)
		st.Close()
		plan = plan.WithHistory(hist)
	} else {
		log.Debug().Err(err).Msg("no state store: forecast from provider defaults only")
	}
	var out []planStep
	for _, n := range plan.Nodes {
		out = append(out, planStep{Name: n.Step.Name(), After: n.After, Server: n.Server, Finalizer: n.Finalizer,
			Summary: n.Doc.Summary, Calls: n.Doc.Calls, Checks: n.Doc.Checks, Expected: n.Doc.Expected})
	}
	var drift []steps.DriftItem
	driftChecked := false
	if !o.NoDrift {
		prov, err := newProvider(rb, o.providerOptions, log)
		if err != nil {
			return err
		}
		drift, err = steps.Drift(ctx, prov, rb, false)
		if err != nil {
			return withHint(fmt.Errorf("drift check against %s: %w", rb.Provider.Endpoint, err), "--no-drift skips the provider")
		}
		driftChecked = true
	}
	if o.Output == "json" {
		if err := writeJSON(g.stdout, map[string]any{"runbook": rb.Name, "mode": mode, "steps": out,
			"expectedNs": plan.Expected(), "forecastRuns": hist.Runs, "driftChecked": driftChecked, "drift": drift}); err != nil {
			return err
		}
	} else {
		printPlan(g.stdout, rb, mode, out, plan.Expected(), hist.Runs)
		if driftChecked && len(drift) == 0 {
			fmt.Fprintf(g.stdout, "\ndrift: none — the provider's inventory matches the runbook\n")
		}
	}
	if len(drift) > 0 {
		return withHint(&steps.DriftError{Items: drift}, "fix the runbook or the account, then run plan again; a run would stop at preflight")
	}
	return nil
}

func printPlan(w io.Writer, rb *runbooks.Runbook, mode runbooks.Mode, ps []planStep, total time.Duration, pastRuns int) {
	fmt.Fprintf(w, "plan: runbook %s, mode %s\n  %s → %s, IPs", rb.Name, mode, rb.Primary.Server, rb.Spare.Server)
	for _, ip := range rb.FailoverIPs {
		fmt.Fprintf(w, " %s", ip)
	}
	fmt.Fprintf(w, ", data over %s\n\n", rb.Data.Transport)
	for i, p := range ps {
		head := fmt.Sprintf("%2d. %s", i+1, p.Name)
		if p.Finalizer {
			head += " (finalizer)"
		}
		if p.Server != "" {
			head += "  [" + p.Server + "]"
		}
		if p.Expected > 0 {
			head += "  ~" + fmtDur(p.Expected)
		}
		fmt.Fprintln(w, head)
		fmt.Fprintf(w, "      %s\n", p.Summary)
		if len(p.After) > 0 {
			fmt.Fprintf(w, "      after:  %s\n", strings.Join(p.After, ", "))
		}
		for _, c := range p.Calls {
			fmt.Fprintf(w, "      call:   %s\n", c)
		}
		if p.Checks != "" {
			fmt.Fprintf(w, "      checks: %s\n", p.Checks)
		}
	}
	basis := "provider defaults"
	if pastRuns > 0 {
		basis = fmt.Sprintf("median of %d past run(s) of this runbook, provider defaults for steps they lack", pastRuns)
	}
	fmt.Fprintf(w, "\nforecast: %s (%s; longest chain of expected step times)", fmtDur(total), basis)
	if rb.TargetRTO.Duration > 0 {
		fmt.Fprintf(w, "; target RTO %s", fmtDur(rb.TargetRTO.Duration))
	}
	fmt.Fprintln(w)
}
