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
	Runbook            string
	DiscardSpareWrites bool
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
	cmd.Flags().BoolVar(&o.DiscardSpareWrites, "discard-spare-writes", false, "fail back a planned run with data.copy although what the spare wrote to its own disks stays there")
	return cmd
}

func runRollback(ctx context.Context, o RollbackOptions, g *globalOptions, run string, failback bool) error {
	s, v, err := sessionForRun(ctx, g, &o.driveOptions, run, o.Runbook)
	if err != nil {
		return err
	}
	defer s.close()
	if err := checkUndoable(v, run, failback, o.DiscardSpareWrites); err != nil {
		return err
	}
	op := map[bool]string{true: "failback", false: "rollback"}[failback]
	rctx, err := s.lock(ctx, run, op)
	if err != nil {
		return err
	}
	// Read again under the lock: another operator's resume may have
	// completed the run meanwhile, and a rollback must not become a failback.
	if v, err = steps.LoadRun(ctx, s.store, run); err != nil {
		return err
	}
	if err := checkUndoable(v, run, failback, o.DiscardSpareWrites); err != nil {
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
		return finish(rctx, run, op, err)
	}
	fmt.Fprintf(g.stdout, "takeover %s: rolled back — %s is served by %s again\n", run, s.rb.Name, s.rb.Primary.Server)
	return nil
}

// checkUndoable refuses a failback of an unfinished run, a rollback of a
// completed one, and a failback that would throw away what the spare wrote
// to its own disks (planned mode with data.copy).
func checkUndoable(v *steps.RunView, run string, failback, discardSpareWrites bool) error {
	if failback && v.Outcome == steps.OutcomeComplete && v.Step(steps.StepCopy).State == steps.StateDone && !discardSpareWrites {
		return withHint(fmt.Errorf("run %s copied the data to the spare's own disks (data.copy): what was written there since is not on the primary, and a failback would leave it behind", run),
			"copy the data back to the primary first (its disks hold the state from before the copy), then run failback with --discard-spare-writes")
	}
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
	return nil
}
