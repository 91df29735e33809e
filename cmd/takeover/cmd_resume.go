package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps"
)

// ResumeOptions are the flags of "takeover resume".
type ResumeOptions struct {
	driveOptions
	Skip    []string
	Runbook string
}

func newResumeCommand(g *globalOptions) *cobra.Command {
	var o ResumeOptions
	cmd := &cobra.Command{
		Use:   "resume RUN",
		Short: "Continue an unfinished run from where it stopped",
		Long: `Resume reloads the run's journal, checks every step against the world again
(a step journalled as done is re-checked, a provider task in flight is polled,
never issued again) and continues from the first unfinished step. It can be run
by anyone with access to the state store, from any machine.

--skip STEP marks a step as skipped (journalled, with who skipped it) so that
the steps after it can run; use it only when you did that step's work by hand.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResume(cmd.Context(), o, g, args[0])
		},
	}
	o.driveOptions.addFlags(cmd)
	cmd.Flags().StringSliceVar(&o.Skip, "skip", nil, "skip these steps (repeatable)")
	cmd.Flags().StringVar(&o.Runbook, "runbook", "", "read the runbook from this file instead of the path journalled at start")
	return cmd
}

// sessionForRun opens a session for an existing run, from its header.
func sessionForRun(ctx context.Context, g *globalOptions, o *driveOptions, run, runbookOverride string) (*session, *steps.RunView, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	if _, err := o.prompter(g); err != nil {
		return nil, nil, err // a usage error comes before reading the run
	}
	st, err := g.openStore(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	v, err := steps.LoadRun(ctx, st, run)
	st.Close()
	if err != nil {
		return nil, nil, withHint(fmt.Errorf("run %s: %w", run, err), `"takeover status" lists the runs in this state store (see --state)`)
	}
	path := v.Header.RunbookFile
	if runbookOverride != "" {
		path = runbookOverride
	}
	mode, err := runbooks.ParseMode(v.Header.Mode)
	if err != nil {
		return nil, nil, fmt.Errorf("run %s: journalled mode: %w", run, err)
	}
	s, err := openSession(ctx, g, o, path, mode)
	if err != nil {
		return nil, nil, err
	}
	if s.rb.Name != v.Header.Runbook {
		s.close()
		return nil, nil, usagef("runbook %s is %q but run %s was started from runbook %q", path, s.rb.Name, run, v.Header.Runbook)
	}
	return s, v, nil
}

func runResume(ctx context.Context, o ResumeOptions, g *globalOptions, run string) error {
	s, v, err := sessionForRun(ctx, g, &o.driveOptions, run, o.Runbook)
	if err != nil {
		return err
	}
	defer s.close()
	rctx, err := s.lock(ctx, run, "resume")
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "takeover %s: resuming (runbook %s, mode %s, started by %s on %s)\n", run, v.Header.Runbook, v.Header.Mode, v.Header.Who, v.Header.Host)
	if err := s.runner.Resume(rctx, run, s.plan, s.env, o.Skip); err != nil {
		return finish(rctx, run, "resume", err)
	}
	fmt.Fprintf(g.stdout, "takeover %s: complete — %s is served by %s\n", run, s.rb.Name, s.rb.Spare.Server)
	if s.mode == runbooks.ModeDrill {
		return finishDrill(ctx, rctx, g, s, run)
	}
	return nil
}
