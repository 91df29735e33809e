package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/steps"
)

// RollbackOptions are the flags of "takeover rollback" and "takeover failback".
type RollbackOptions struct {
	driveOptions
	Runbook string
}

func newRollbackCommand(g *globalOptions) *cobra.Command {
	var o RollbackOptions
	cmd := &cobra.Command{
		Use:   "rollback RUN",
		Short: "Undo an unfinished run, newest step first",
		Long: `Rollback undoes what a run did, newest step first: steps cut off mid-way
first, then completed steps from the last one back. For a takeover cut off
after its IP moves that means: move the IPs back, stop the services on the
spare, unmount and detach the disks, stop the exports, set the netboot back to
disk and reboot the primary into its own OS. Each undo is journalled; if one
fails, fix the cause and run rollback again: it goes on from there.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRollback(cmd.Context(), o, g, args[0], false)
		},
	}
	o.driveOptions.addFlags(cmd)
	cmd.Flags().StringVar(&o.Runbook, "runbook", "", "read the runbook from this file instead of the path journalled at start")
	return cmd
}

func newFailbackCommand(g *globalOptions) *cobra.Command {
	var o RollbackOptions
	cmd := &cobra.Command{
		Use:   "failback RUN",
		Short: "Give a completed takeover back to the repaired primary",
		Long: `Failback is the mirror of a completed takeover, once the primary is repaired:
move the IPs back, stop the services on the spare, unmount and detach the
disks, stop the exports, set the netboot back to disk, reboot the primary into
its own OS and (when the runbook gives primary.ssh) wait until it answers.
The spare wrote to the primary's own disks over the network, so nothing has to
be copied back (a planned run with data.copy is the exception: copy the data
back first).
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRollback(cmd.Context(), o, g, args[0], true)
		},
	}
	o.driveOptions.addFlags(cmd)
	cmd.Flags().StringVar(&o.Runbook, "runbook", "", "read the runbook from this file instead of the path journalled at start")
	return cmd
}

func runRollback(ctx context.Context, o RollbackOptions, g *globalOptions, run string, failback bool) error {
	s, v, err := sessionForRun(ctx, g, &o.driveOptions, run, o.Runbook)
	if err != nil {
		return err
	}
	defer s.close()
	switch {
	case failback && v.Outcome != steps.OutcomeComplete:
		outcome := v.Outcome
		if outcome == "" {
			outcome = "unfinished"
		}
		return withHint(fmt.Errorf("run %s is not a completed takeover (it is %s)", run, outcome),
			fmt.Sprintf("an unfinished run is undone with \"takeover rollback %s\"", run))
	case !failback && v.Outcome == steps.OutcomeComplete:
		return withHint(fmt.Errorf("run %s completed: the takeover stands", run),
			fmt.Sprintf("to give the service back to the repaired primary, run \"takeover failback %s\"", run))
	}
	rctx, err := s.lock(ctx, run, map[bool]string{true: "failback", false: "rollback"}[failback])
	if err != nil {
		return err
	}
	verb := "rolling back"
	if failback {
		verb = "failing back"
	}
	fmt.Fprintf(g.stdout, "takeover %s: %s (runbook %s)\n", run, verb, v.Header.Runbook)
	if err := s.runner.Rollback(rctx, run, s.plan, s.env); err != nil {
		if errors.Is(err, steps.ErrRunFinished) {
			return err
		}
		return finish(rctx, run, map[bool]string{true: "failback", false: "rollback"}[failback], err)
	}
	fmt.Fprintf(g.stdout, "takeover %s: rolled back — %s is served by %s again\n", run, s.rb.Name, s.rb.Primary.Server)
	return nil
}
