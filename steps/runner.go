package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/state"
)

// Event reports a step transition to the operator's UI.
type Event struct {
	Run      string
	Step     string
	Server   string
	State    State
	Attempt  int
	Elapsed  time.Duration // for ended steps: how long the attempt took
	Err      error
	Note     string // e.g. "already in place", "verified"
	Rollback bool
}

// Runner executes plans against a store. The zero value is not usable:
// Store is required.
type Runner struct {
	Store state.Store
	Log   zerolog.Logger
	// Events, if set, receives every step transition (from several
	// goroutines, one call at a time).
	Events func(Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StepTimeout bounds one attempt of a step without its own Timeout.
	StepTimeout time.Duration
	// BeforeAppend and AfterAppend, if set, are called around every journal
	// append with the record's sequence number. Crash tests use them.
	BeforeAppend, AfterAppend func(seq int64)

	evMu chan struct{}
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) emit(ev Event) {
	if r.Events == nil {
		return
	}
	r.evMu <- struct{}{}
	defer func() { <-r.evMu }()
	r.Events(ev)
}

func (r *Runner) newJournal(run string, v *RunView) *journal {
	j := &journal{store: r.Store, run: run, now: r.now, notes: map[string]map[string]json.RawMessage{},
		done: map[string]bool{}, before: r.BeforeAppend, after: r.AfterAppend}
	if v != nil {
		j.next = int64(len(v.Records))
		for name, s := range v.Steps {
			if len(s.Notes) > 0 {
				j.notes[name] = map[string]json.RawMessage{}
				for k, val := range s.Notes {
					j.notes[name][k] = val
				}
			}
			j.done[name] = s.State == StateDone || s.State == StateSkipped
		}
	}
	return j
}

func (r *Runner) init() error {
	if r.Store == nil {
		return errors.New("runner: no state store")
	}
	if r.evMu == nil {
		r.evMu = make(chan struct{}, 1)
	}
	return nil
}

// Start begins a new run described by h and executes plan.
// It returns nil when the run completed, an error wrapping [ErrRunFailed]
// (with a *[StepError]) when a step failed, or the context's error when
// interrupted; in the last two cases the run can be resumed.
func (r *Runner) Start(ctx context.Context, h Header, plan Plan, env *Env) error {
	if err := r.init(); err != nil {
		return err
	}
	if err := plan.Validate(); err != nil {
		return err
	}
	if h.Run == "" {
		return errors.New("start run: empty run id")
	}
	if _, err := r.Store.Records(ctx, h.Run); err == nil {
		return fmt.Errorf("start run %s: a run with this id already exists", h.Run)
	} else if !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("start run %s: %w", h.Run, err)
	}
	h.Steps = nil
	for _, n := range plan.Nodes {
		h.Steps = append(h.Steps, n.Step.Name())
	}
	if h.Created.IsZero() {
		h.Created = r.now().UTC()
	}
	j := r.newJournal(h.Run, nil)
	if err := j.append(ctx, state.Record{Phase: state.PhaseRunStarted, Out: mustJSON(h)}); err != nil {
		return err
	}
	v, err := LoadRun(ctx, r.Store, h.Run)
	if err != nil {
		return err
	}
	return r.forward(ctx, j, v, plan, env)
}

// Resume continues an unfinished run: it re-Checks every step, skips the
// steps named in skip (journalled as skipped), and goes on.
func (r *Runner) Resume(ctx context.Context, run string, plan Plan, env *Env, skip []string) error {
	if err := r.init(); err != nil {
		return err
	}
	v, err := r.loadForUpdate(ctx, run, plan)
	if err != nil {
		return err
	}
	if v.Rollback {
		return fmt.Errorf("resume run %s: a rollback of this run has started; run rollback again to finish it", run)
	}
	j := r.newJournal(run, v)
	for _, name := range skip {
		n, ok := plan.Node(name)
		if !ok {
			return fmt.Errorf("resume run %s: --skip %s: no such step (steps: %s)", run, name, stepNames(plan))
		}
		if v.Step(name).State == StateDone {
			continue
		}
		if err := j.append(ctx, state.Record{Step: name, Phase: state.PhaseSkipped, Out: mustJSON(map[string]string{"by": "operator"})}); err != nil {
			return err
		}
		r.emit(Event{Run: run, Step: name, Server: n.Server, State: StateSkipped, Note: "skipped by operator"})
	}
	if v, err = LoadRun(ctx, r.Store, run); err != nil {
		return err
	}
	return r.forward(ctx, j, v, plan, env)
}

func (r *Runner) loadForUpdate(ctx context.Context, run string, plan Plan) (*RunView, error) {
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	v, err := LoadRun(ctx, r.Store, run)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", run, err)
	}
	if v.Outcome != "" {
		return nil, fmt.Errorf("run %s: %w (%s)", run, ErrRunFinished, v.Outcome)
	}
	var names []string
	for _, n := range plan.Nodes {
		names = append(names, n.Step.Name())
	}
	if !slices.Equal(names, v.Header.Steps) {
		return nil, fmt.Errorf("run %s: the plan no longer matches the journal (journal steps: %v; plan steps: %v): the runbook changed since the run started; restore it or roll back with the original", run, v.Header.Steps, names)
	}
	return v, nil
}

func stepNames(p Plan) string {
	var s []string
	for _, n := range p.Nodes {
		s = append(s, n.Step.Name())
	}
	return fmt.Sprint(s)
}

type result struct {
	name string
	err  error
}

// forward runs every non-finalizer node whose dependencies are satisfied,
// in parallel, stopping new starts at the first non-optional failure or
// when ctx ends; then, if everything is done, the finalizers.
func (r *Runner) forward(ctx context.Context, j *journal, v *RunView, plan Plan, env *Env) error {
	const (
		waiting = iota
		running
		ok
		failed
	)
	st := map[string]int{}
	var order []string
	for _, n := range plan.Nodes {
		if !n.Finalizer {
			st[n.Step.Name()] = waiting
			order = append(order, n.Step.Name())
		}
	}
	results := make(chan result)
	inflight := 0
	var firstErr error
	stop := false
	for {
		if !stop && ctx.Err() == nil {
			for _, name := range order {
				if st[name] != waiting {
					continue
				}
				n, _ := plan.Node(name)
				ready := true
				for _, d := range n.After {
					if st[d] != ok {
						ready = false
						break
					}
				}
				if !ready {
					continue
				}
				st[name] = running
				inflight++
				go func(n Node) {
					results <- result{n.Step.Name(), r.execute(ctx, j, v, n, env)}
				}(n)
			}
		}
		if inflight == 0 {
			break
		}
		res := <-results
		inflight--
		n, _ := plan.Node(res.name)
		switch {
		case res.err == nil:
			st[res.name] = ok
		case n.Optional && ctx.Err() == nil:
			st[res.name] = ok
			r.Log.Warn().Str("step", res.name).Err(res.err).Msg("optional step failed; going on")
		default:
			st[res.name] = failed
			if firstErr == nil {
				firstErr = res.err
			}
			stop = true
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run %s interrupted: %w", j.run, err)
	}
	if firstErr != nil {
		return fmt.Errorf("%w: %w", ErrRunFailed, firstErr)
	}
	for _, name := range order {
		if st[name] != ok {
			return fmt.Errorf("%w: step %s could not start", ErrRunFailed, name)
		}
	}
	if err := r.finalize(ctx, j, v, plan, env); err != nil {
		return err
	}
	return j.append(ctx, state.Record{Phase: state.PhaseRunFinished, Out: mustJSON(map[string]string{"outcome": OutcomeComplete})})
}

// finalize runs the finalizers not yet done, in plan order, all of them
// even if one fails; it returns the first failure.
func (r *Runner) finalize(ctx context.Context, j *journal, v *RunView, plan Plan, env *Env) error {
	var firstErr error
	for _, n := range plan.Nodes {
		if !n.Finalizer {
			continue
		}
		if err := r.execute(ctx, j, v, n, env); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("%w: finalizer: %w", ErrRunFailed, firstErr)
	}
	return nil
}

// execute runs one step: re-Check a journalled done, otherwise journal the
// intent, Check, Do unless in place, Check again, journal the result.
func (r *Runner) execute(ctx context.Context, j *journal, v *RunView, n Node, env *Env) error {
	name := n.Step.Name()
	prev := v.Step(name)
	log := r.Log.With().Str("run", j.run).Str("step", name).Str("server", n.Server).Logger()
	if prev.State == StateSkipped {
		return nil
	}
	attempt := prev.Attempt
	if prev.State == StateDone {
		e := env.bind(name, attempt, log)
		e.j = j
		done, err := n.Step.Check(ctx, e)
		if err == nil && done {
			r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateDone, Attempt: attempt, Note: "verified"})
			return nil
		}
		ev := log.Warn()
		if n.Finalizer && env.rollback {
			ev = log.Info() // a finalizer's forward no-op does not hold for the rollback
		}
		ev.Err(err).Msg("journal says done but the world does not agree; running the step again")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	attempt++
	e := env.bind(name, attempt, log)
	e.j = j
	start := r.now()
	if err := j.append(ctx, state.Record{Step: name, Phase: state.PhaseIntent, Attempt: attempt}); err != nil {
		return &StepError{Step: name, Server: n.Server, Attempt: attempt, Err: err}
	}
	r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateRunning, Attempt: attempt})
	fail := func(err error) error {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("interrupted (the orchestrator was stopped or lost its lease): %w", err)
		}
		serr := &StepError{Step: name, Server: n.Server, Attempt: attempt, Err: err}
		if jerr := j.append(ctx, state.Record{Step: name, Phase: state.PhaseFailed, Attempt: attempt, Err: err.Error()}); jerr != nil {
			log.Error().Err(jerr).Msg("could not journal the failure")
		}
		r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateFailed, Attempt: attempt, Elapsed: r.now().Sub(start), Err: serr})
		return serr
	}
	timeout, sctx, cancel := r.stepContext(ctx, n)
	defer cancel()
	done, err := n.Step.Check(sctx, e)
	if err != nil {
		return fail(fmt.Errorf("check: %w", err))
	}
	already := done
	if !done {
		if err := sctx.Err(); err != nil {
			return fail(err)
		}
		if err := n.Step.Do(sctx, e); err != nil {
			if sctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("timed out after %s: %w", timeout, err)
			}
			return fail(err)
		}
		done, err = n.Step.Check(sctx, e)
		if err != nil {
			return fail(fmt.Errorf("verify: %w", err))
		}
		if !done {
			return fail(errors.New("verify: the step's effect is not in place after it ran"))
		}
	}
	out := map[string]any{"alreadyInPlace": already}
	if err := j.append(ctx, state.Record{Step: name, Phase: state.PhaseDone, Attempt: attempt, Out: mustJSON(out)}); err != nil {
		return &StepError{Step: name, Server: n.Server, Attempt: attempt, Err: err}
	}
	note := ""
	if already {
		note = "already in place"
	}
	r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateDone, Attempt: attempt, Elapsed: r.now().Sub(start), Note: note})
	return nil
}

// Rollback undoes an unfinished (or completed) run: Undo of every step that
// started, in reverse order (steps cut off mid-way first, then done steps
// from the last done), then the finalizers, then it records the run as
// rolled back. It stops at the first Undo that fails; Rollback can be
// called again to continue.
func (r *Runner) Rollback(ctx context.Context, run string, plan Plan, env *Env) error {
	if err := r.init(); err != nil {
		return err
	}
	v, err := r.loadForUpdate(ctx, run, plan)
	if err != nil && !errors.Is(err, ErrRunFinished) {
		return err
	}
	if err != nil {
		if v2, lerr := LoadRun(ctx, r.Store, run); lerr != nil || v2.Outcome != OutcomeComplete {
			return err
		} else {
			v = v2
		}
		var names []string
		for _, n := range plan.Nodes {
			names = append(names, n.Step.Name())
		}
		if !slices.Equal(names, v.Header.Steps) {
			return fmt.Errorf("run %s: the plan no longer matches the journal (journal steps: %v; plan steps: %v): the runbook changed since the run; fail back with the original (--runbook FILE)", run, v.Header.Steps, names)
		}
	}
	j := r.newJournal(run, v)
	renv := *env
	renv.rollback = true
	env = &renv
	type item struct {
		n   Node
		key int64
	}
	var partial, done []item
	for _, n := range plan.Nodes {
		if n.Finalizer {
			continue
		}
		s := v.Step(n.Step.Name())
		switch s.State {
		case StateRunning, StateWaiting, StateFailed, StateUndoing:
			partial = append(partial, item{n, s.Started.UnixNano()})
		case StateDone:
			done = append(done, item{n, s.DoneSeq})
		}
	}
	sort.SliceStable(partial, func(a, b int) bool { return partial[a].key > partial[b].key })
	sort.SliceStable(done, func(a, b int) bool { return done[a].key > done[b].key })
	for _, it := range append(partial, done...) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("rollback of run %s interrupted: %w", run, err)
		}
		if err := r.undo(ctx, j, it.n, env); err != nil {
			return fmt.Errorf("%w: %w", ErrRunFailed, err)
		}
	}
	if err := r.finalize(ctx, j, v, plan, env); err != nil {
		return err
	}
	return j.append(ctx, state.Record{Phase: state.PhaseRunFinished, Out: mustJSON(map[string]string{"outcome": OutcomeRolledBack})})
}

func (r *Runner) undo(ctx context.Context, j *journal, n Node, env *Env) error {
	name := n.Step.Name()
	log := r.Log.With().Str("run", j.run).Str("step", name).Str("server", n.Server).Bool("undo", true).Logger()
	e := env.bind(name, 0, log)
	e.j = j
	start := r.now()
	if err := j.append(ctx, state.Record{Step: name, Phase: state.PhaseUndoIntent}); err != nil {
		return &StepError{Step: name, Server: n.Server, Err: err}
	}
	r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateUndoing, Rollback: true})
	_, sctx, cancel := r.stepContext(ctx, n)
	defer cancel()
	err := n.Step.Undo(sctx, e)
	note := ""
	switch {
	case errors.Is(err, ErrNoUndo):
		note = "nothing to undo"
	case err != nil:
		serr := &StepError{Step: name, Server: n.Server, Err: fmt.Errorf("undo: %w", err)}
		if jerr := j.append(ctx, state.Record{Step: name, Phase: state.PhaseFailed, Err: serr.Err.Error()}); jerr != nil {
			log.Error().Err(jerr).Msg("could not journal the failure")
		}
		r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateFailed, Elapsed: r.now().Sub(start), Err: serr, Rollback: true})
		return serr
	}
	if err := j.append(ctx, state.Record{Step: name, Phase: state.PhaseUndone, Out: mustJSON(map[string]bool{"noUndo": note != ""})}); err != nil {
		return &StepError{Step: name, Server: n.Server, Err: err}
	}
	r.emit(Event{Run: j.run, Step: name, Server: n.Server, State: StateUndone, Elapsed: r.now().Sub(start), Note: note, Rollback: true})
	return nil
}

// stepContext bounds one attempt of n by its timeout (or the runner's).
func (r *Runner) stepContext(ctx context.Context, n Node) (time.Duration, context.Context, context.CancelFunc) {
	timeout := n.Timeout
	if timeout == 0 {
		timeout = r.StepTimeout
	}
	if timeout <= 0 {
		return 0, ctx, func() {}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	return timeout, sctx, cancel
}
