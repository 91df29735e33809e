package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
)

// driveOptions are the flags shared by the commands that drive a run.
type driveOptions struct {
	providerOptions
	Yes        bool
	AcceptRisk string
	Poll       time.Duration // task poll interval override (lab, drills)
}

func (o *driveOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	o.providerOptions.addFlags(f)
	f.BoolVar(&o.Yes, "yes", false, "do not ask for a typed confirmation (needs --accept-risk)")
	f.StringVar(&o.AcceptRisk, "accept-risk", "", "with --yes: the risks accepted, comma-separated: fence,ip-move")
	f.DurationVar(&o.Poll, "poll-interval", 0, "poll provider tasks this often instead of OVH's schedule (10s, then 3s..10s)")
}

func (o *driveOptions) prompter(g *globalOptions) (steps.Prompter, error) {
	who, _ := whoami()
	if !o.Yes {
		if o.AcceptRisk != "" {
			return nil, usagef("--accept-risk needs --yes")
		}
		return &stdinPrompter{in: bufio.NewReader(g.stdin), out: g.stdout, who: who}, nil
	}
	risks := strings.Split(o.AcceptRisk, ",")
	slices.Sort(risks)
	if !slices.Equal(risks, []string{"fence", "ip-move"}) {
		return nil, usagef("--yes needs --accept-risk=fence,ip-move: it hard-reboots the primary and moves its IPs without asking")
	}
	return autoPrompter{who: who, risks: "fence,ip-move"}, nil
}

// session is what a command driving a run needs.
type session struct {
	log    zerolog.Logger
	store  state.Store
	rb     *runbooks.Runbook
	mode   runbooks.Mode
	plan   steps.Plan
	env    *steps.Env
	runner *steps.Runner
	locks  *lockSet
	// progress is the operator's view on stdout.
	progress *progress
}

func (s *session) close() {
	if s.progress != nil {
		s.progress.close()
	}
	if s.locks != nil {
		s.locks.release(s.log)
	}
	if s.env != nil && s.env.Hosts != nil {
		s.env.Hosts.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// openSession loads the runbook, builds the plan and the environment, and
// opens the store. It takes no lock.
func openSession(ctx context.Context, g *globalOptions, o *driveOptions, runbookPath string, mode runbooks.Mode) (*session, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	s := &session{log: log, mode: mode}
	// Flags first: a usage error must not hide behind a credentials error.
	prompter, err := o.prompter(g)
	if err != nil {
		return nil, err
	}
	s.rb, err = loadRunbook(runbookPath)
	if err != nil {
		return nil, err
	}
	s.plan, err = steps.BuildPlan(s.rb, mode)
	if err != nil {
		return nil, fmt.Errorf("plan of runbook %s: %w", s.rb.Name, err)
	}
	prov, err := newProvider(s.rb, o.providerOptions, log)
	if err != nil {
		return nil, err
	}
	s.store, err = g.openStore(ctx, log)
	if err != nil {
		return nil, err
	}
	hosts := steps.NewHosts(s.rb, log)
	s.progress = newProgress(g.stdout)
	if sp, ok := prompter.(*stdinPrompter); ok {
		sp.pause = s.progress.pause
	}
	s.env = &steps.Env{Provider: prov, Runbook: s.rb, Mode: mode, Prompter: prompter, Out: s.progress, Hosts: hosts}
	if o.Poll > 0 {
		s.env.Poll = provider.WaitOptions{Initial: o.Poll, Min: o.Poll, Max: o.Poll}
	}
	s.runner = &steps.Runner{Store: s.store, Log: log, Events: s.progress.event, StepTimeout: s.rb.Timeouts.Step.Duration}
	return s, nil
}

// lock takes the run's leases and returns the context to run under.
func (s *session) lock(ctx context.Context, run, op string) (context.Context, error) {
	rctx, ls, err := lockAll(ctx, s.store, steps.LockNames(s.rb), run, op, s.log)
	if err != nil {
		return nil, err
	}
	s.locks = ls
	return rctx, nil
}

// finish turns a runner error into the CLI's error, with the cause of a
// cancelled context (a lost lease) made visible.
func finish(ctx context.Context, run, op string, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return &runError{run: run, op: op, err: err}
}
