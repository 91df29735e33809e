package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps"
)

// RunOptions are the flags of "takeover run".
type RunOptions struct {
	driveOptions
	Mode string
	Run  string
}

func newRunCommand(g *globalOptions) *cobra.Command {
	var o RunOptions
	cmd := &cobra.Command{
		Use:   "run RUNBOOK",
		Short: "Run a takeover: fence the primary, bring its data up on the spare, move the IPs",
		Long: `Run executes a runbook in one mode:

  disaster  the primary is dead or sick: fence it into rescue first, no graceful stop
  planned   ahead of maintenance: stop the services on the healthy primary first,
            optionally copy the data to the spare's own disks
  drill     a full takeover, then an automatic failback, then a report

Every step is journalled before and after it acts. If the run stops, it can be
continued with "takeover resume RUN" or undone with "takeover rollback RUN".
Before the fence you are asked to type the primary's server name, unless
--yes --accept-risk=fence,ip-move is given.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), o, g, args[0])
		},
	}
	o.driveOptions.addFlags(cmd)
	cmd.Flags().StringVar(&o.Mode, "mode", "disaster", "disaster, planned or drill")
	cmd.Flags().StringVar(&o.Run, "run-id", "", "use this run id instead of a generated one")
	return cmd
}

func runRun(ctx context.Context, o RunOptions, g *globalOptions, runbookPath string) error {
	mode, err := runbooks.ParseMode(o.Mode)
	if err != nil {
		return usagef("--mode: %w", err)
	}
	s, err := openSession(ctx, g, &o.driveOptions, runbookPath, mode)
	if err != nil {
		return err
	}
	defer s.close()
	run := o.Run
	if run == "" {
		run = newRunID(s.rb, time.Now())
	}
	rctx, err := s.lock(ctx, run, "run")
	if err != nil {
		return err
	}
	if err := refuseUnfinished(ctx, s); err != nil {
		return err
	}
	who, host := whoami()
	forecast := s.plan.Expected()
	if hist, err := steps.LoadHistory(ctx, s.store, s.rb.Name); err == nil && hist.Runs > 0 {
		forecast = s.plan.WithHistory(hist).Expected()
	}
	fmt.Fprintf(g.stdout, "takeover %s: runbook %s, mode %s, %s → %s (forecast %s)\n", run, s.rb.Name, mode, s.rb.Primary.Server, s.rb.Spare.Server, forecast.Round(100*time.Millisecond))
	rbFile, _ := filepath.Abs(s.rb.File)
	h := steps.Header{Run: run, Runbook: s.rb.Name, RunbookFile: rbFile, Mode: string(mode), Who: who, Host: host, Locks: steps.LockNames(s.rb)}
	err = s.runner.Start(rctx, h, s.plan, s.env)
	if err != nil {
		return finish(rctx, run, "run", err)
	}
	fmt.Fprintf(g.stdout, "takeover %s: complete — %s is served by %s\n", run, s.rb.Name, s.rb.Spare.Server)
	if mode == runbooks.ModeDrill {
		return finishDrill(ctx, rctx, g, s, run)
	}
	return nil
}

// finishDrill fails a completed drill back (unless the runbook says
// modes.drill.failback: false) and prints its report.
func finishDrill(ctx, rctx context.Context, g *globalOptions, s *session, run string) error {
	if s.rb.Modes.Drill.Failback {
		fmt.Fprintf(g.stdout, "takeover %s: drill: failing back\n", run)
		if err := s.runner.Rollback(rctx, run, s.plan, s.env); err != nil {
			return finish(rctx, run, "failback", err)
		}
	} else {
		fmt.Fprintf(g.stdout, "takeover %s: drill: no automatic failback (modes.drill.failback: false); run \"takeover failback %s\" when done\n", run, run)
	}
	return printReport(ctx, g, s.store, run, s.rb.TargetRTO.Duration)
}

// unfinishedRunError refuses a new run while an unfinished run holds (held)
// the same servers or IPs: starting over would fence a rescue system whose
// disks another run has exported, and its "before" state would be wrong.
type unfinishedRunError struct {
	header steps.Header
}

func (e *unfinishedRunError) Error() string {
	h := e.header
	return fmt.Sprintf("run %s of runbook %s (started by %s on %s at %s) is unfinished and acts on the same servers or IPs",
		h.Run, h.Runbook, h.Who, h.Host, h.Created.Local().Format("2006-01-02 15:04:05"))
}

// refuseUnfinished returns an *unfinishedRunError if an unfinished run
// shares a lock name with s's runbook.
func refuseUnfinished(ctx context.Context, s *session) error {
	mine := map[string]bool{}
	for _, n := range steps.LockNames(s.rb) {
		mine[n] = true
	}
	ids, err := s.store.Runs(ctx)
	if err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	for _, id := range ids {
		v, err := steps.LoadRun(ctx, s.store, id)
		if err != nil || v.Outcome != "" {
			continue // unreadable runs are reported by status; finished ones are done
		}
		for _, n := range v.Header.Locks {
			if mine[n] {
				return &unfinishedRunError{header: v.Header}
			}
		}
	}
	return nil
}
