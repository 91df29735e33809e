// This file is the only place that prints errors and picks exit codes.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
)

// Exit codes, documented in the README and in each command's help.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitStepFailed  = 3
	exitLocked      = 11
	exitInterrupted = 130
)

const exitStatusHelp = `
EXIT STATUS
  0    success
  1    error (nothing or nothing more was changed; read the message)
  2    usage error (bad flags or arguments, invalid runbook)
  3    a step failed; the run is saved: "takeover resume RUN" or "takeover rollback RUN"
  11   a lock is held by another run (the holder is printed)
  130  interrupted; the journal is flushed and the lock released: "takeover resume RUN"
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// realMain runs the CLI with the given arguments and streams and returns the
// process exit code. SIGINT and SIGTERM cancel the root context: steps stop
// starting, the journal is flushed and locks are released.
func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	return report(stderr, err)
}

// usageError marks errors in how takeover was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// hinted carries hints to print after the error.
type hinted struct {
	err   error
	hints []string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }

func withHint(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &hinted{err: err, hints: hints}
}

// runError is returned by commands that drive a run, so that the exit path
// can name the run and the operation in its hints.
type runError struct {
	run string
	op  string // run, resume, rollback, failback
	err error
}

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// report prints err with hints and returns the exit code.
func report(w io.Writer, err error) int {
	code := exitError
	var hints []string
	var run string
	var re *runError
	if errors.As(err, &re) {
		run = re.run
	}
	var ue *usageError
	var unfinished *unfinishedRunError
	undoing := re != nil && (re.op == "rollback" || re.op == "failback")
	switch {
	case errors.As(err, &ue):
		code = exitUsage
		var h *hinted
		if !errors.As(err, &h) { // a specific hint beats the generic one
			hints = append(hints, `run "takeover help" or "takeover COMMAND --help"`)
		}
	case errors.As(err, &unfinished):
		code = exitLocked
		u := unfinished.header.Run
		hints = append(hints, fmt.Sprintf("continue it with \"takeover resume %s\" or undo it with \"takeover rollback %s\"; \"takeover status %s\" shows where it stopped", u, u, u))
	case errors.Is(err, state.ErrLeaseLost):
		code = exitError
		hints = append(hints, "the lease on the run's servers was lost (store unreachable, or this machine slept past it): another operator may have taken over",
			fmt.Sprintf("check \"takeover status %s\" before doing anything else", run))
	case errors.Is(err, context.Canceled):
		code = exitInterrupted
		switch {
		case run != "" && undoing:
			hints = append(hints, fmt.Sprintf("the journal is saved and locks released; continue with \"takeover %s %s\"", re.op, run))
		case run != "":
			hints = append(hints, fmt.Sprintf("the journal is saved and locks released; continue with \"takeover resume %s\" or undo with \"takeover rollback %s\"", run, run))
		}
	case errors.Is(err, steps.ErrRunFailed):
		code = exitStepFailed
		switch {
		case run != "" && undoing:
			hints = append(hints, fmt.Sprintf("fix the cause, then run \"takeover %s %s\" again: it goes on from the step that failed; see \"takeover status %s\"", re.op, run, run))
		case run != "":
			hints = append(hints,
				fmt.Sprintf("fix the cause, then \"takeover resume %s\" (retries the failed step) or \"takeover resume %s --skip STEP\"", run, run),
				fmt.Sprintf("or undo what was done with \"takeover rollback %s\"; see \"takeover status %s\"", run, run))
		}
	}
	if holder, ok := state.IsLocked(err); ok {
		code = exitLocked
		hints = append(hints, fmt.Sprintf("another run holds %s; wait for it, or see \"takeover status %s\"", holder.Name, holder.Run),
			fmt.Sprintf("if that holder is gone for sure, \"takeover unlock %s\" removes the lock", holder.ID))
	}
	var h *hinted
	if errors.As(err, &h) {
		hints = append(h.hints, hints...)
	}
	fmt.Fprintf(w, "takeover: error: %v\n", err)
	for _, hint := range hints {
		fmt.Fprintf(w, "takeover: hint: %s\n", hint)
	}
	return code
}
