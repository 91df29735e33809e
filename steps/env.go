package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
)

// Prompter asks the operator for approval. Confirm shows question and asks
// the operator to type token; it returns a description of how the approval
// was given (e.g. "typed by alice") or an error when refused or when no one
// can answer. Steps journal the description and the time the wait took, so
// human time is reported apart from machine time.
type Prompter interface {
	Confirm(ctx context.Context, question, token string) (how string, err error)
}

// Env is what a step works with: typed dependencies, not a bag. The runner
// gives each step attempt its own copy, bound to that step's journal
// entries, so [Env.Save] and [Env.Load] need no step name.
type Env struct {
	// Run is the run id.
	Run string
	// Log is tagged with run, step and server by the runner.
	Log zerolog.Logger
	// Provider is the hosting API of the runbook's account.
	Provider provider.Provider
	// Runbook is the runbook being run, already validated.
	Runbook *runbooks.Runbook
	// Mode is the run's mode.
	Mode runbooks.Mode
	// Prompter asks the operator; nil means no one can be asked.
	Prompter Prompter
	// Out receives human progress lines from steps (stdout of the CLI); may be nil.
	Out io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Poll tunes provider task waits (the lab shortens them).
	Poll provider.WaitOptions
	// Hosts reaches the spare, the primary's rescue system and its normal
	// OS over SSH; one connection per host, shared by steps.
	Hosts *Hosts
	// rollback is true while the runner rolls the run back.
	rollback bool
	step     string
	attempt  int
	j        *journal
}

// RollingBack reports whether the step runs as part of a rollback
// (finalizers behave differently then).
func (e *Env) RollingBack() bool { return e.rollback }

// Step is the name of the step this Env is bound to.
func (e *Env) Step() string { return e.step }

// Attempt is the attempt number of the current step (1 for the first).
func (e *Env) Attempt() int { return e.attempt }

// Clock returns the current time.
func (e *Env) Clock() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Save journals an output of the current step under key, durably, before
// returning. Use it the moment a fact is known that a resumed run must not
// lose: a provider task id, a host key seen for the first time. Values must
// not hold secrets.
func (e *Env) Save(ctx context.Context, key string, v any) error {
	if e.j == nil {
		return fmt.Errorf("save %s: env is not bound to a run", key)
	}
	return e.j.append(ctx, state.Record{Step: e.step, Phase: state.PhaseNote, Attempt: e.attempt,
		Out: mustJSON(map[string]any{key: v})})
}

// Load reads the latest value saved under key by step (the current step
// when step is ""), in this run or in an earlier process of it. It reports
// whether a value was found.
func (e *Env) Load(step, key string, v any) (bool, error) {
	if e.j == nil {
		return false, nil
	}
	if step == "" {
		step = e.step
	}
	raw, ok := e.j.note(step, key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("load %s of step %s: %w", key, step, err)
	}
	return true, nil
}

// Flag reports whether the current step journalled key as true (the
// record of a check or an action whose effect cannot be observed later).
func (e *Env) Flag(key string) (bool, error) {
	var v bool
	ok, err := e.Load("", key, &v)
	return ok && v, err
}

// Waiting journals that the current step waits on something (a provider
// task, a person) so that status shows it.
func (e *Env) Waiting(ctx context.Context, on string) error {
	if e.j == nil {
		return nil
	}
	return e.j.append(ctx, state.Record{Step: e.step, Phase: state.PhaseWaiting, Attempt: e.attempt,
		Out: mustJSON(map[string]string{"on": on})})
}

// StepDone reports whether step is done in this run as far as the journal
// of this process knows (used by steps that must never run before another,
// such as the IP move before the fence is confirmed).
func (e *Env) StepDone(step string) bool {
	if e.j == nil {
		return false
	}
	e.j.mu.Lock()
	defer e.j.mu.Unlock()
	return e.j.done[step]
}

// Printf writes a progress line for the operator.
func (e *Env) Printf(format string, args ...any) {
	if e.Out != nil {
		fmt.Fprintf(e.Out, format+"\n", args...)
	}
}

func (e *Env) bind(step string, attempt int, log zerolog.Logger) *Env {
	c := *e
	c.step, c.attempt, c.Log = step, attempt, log
	return &c
}
