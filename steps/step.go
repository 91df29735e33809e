package steps

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Step is one unit of a takeover.
//
// Check observes the world and reports whether the step's effect is already
// in place; it must have no side effects. Do brings the effect about and
// must be safe to repeat after a crash in the middle of an earlier Do (it
// may consult the journal through [Env.Load] for what an earlier attempt
// recorded, e.g. a provider task id). Undo compensates the effect, is safe
// to repeat, and returns [ErrNoUndo] when the step cannot be undone.
type Step interface {
	Name() string
	Check(ctx context.Context, e *Env) (done bool, err error)
	Do(ctx context.Context, e *Env) error
	Undo(ctx context.Context, e *Env) error
}

// ErrNoUndo is returned by Undo of a step that has nothing to compensate
// or cannot be compensated; rollback records it and goes on.
var ErrNoUndo = errors.New("step has no undo")

// Node is a step placed in a plan.
type Node struct {
	Step Step
	// After names the steps that must be done (or skipped) before this one starts.
	After []string
	// Server is the server the step acts on, named in errors.
	Server string
	// Timeout bounds one attempt of Do; zero means the runner's default.
	Timeout time.Duration
	// Optional steps may fail without failing the run; their dependents still run.
	Optional bool
	// Finalizer steps run once when the run ends (completed or rolled back),
	// whatever happened before, and have no dependencies.
	Finalizer bool
	// Doc describes the step for `takeover plan`.
	Doc Doc
}

// Doc is the human description of a step used by plans.
type Doc struct {
	Summary  string        `json:"summary"`
	Calls    []string      `json:"calls,omitempty"`  // provider calls and remote commands it makes
	Checks   string        `json:"checks,omitempty"` // what Check observes
	Expected time.Duration `json:"expected,omitempty"`
}

// Plan is the ordered list of steps of a run. Order matters only for
// display and for ties; dependencies decide what runs when.
type Plan struct {
	Nodes []Node
}

// Validate checks that names are unique, dependencies exist, finalizers
// have none, and there is no cycle.
func (p Plan) Validate() error {
	idx := map[string]int{}
	for i, n := range p.Nodes {
		if n.Step == nil {
			return fmt.Errorf("plan: node %d has no step", i)
		}
		name := n.Step.Name()
		if name == "" {
			return fmt.Errorf("plan: node %d has an empty step name", i)
		}
		if _, dup := idx[name]; dup {
			return fmt.Errorf("plan: step %q appears twice", name)
		}
		idx[name] = i
	}
	for _, n := range p.Nodes {
		if n.Finalizer && len(n.After) > 0 {
			return fmt.Errorf("plan: finalizer %q cannot have dependencies", n.Step.Name())
		}
		for _, d := range n.After {
			j, ok := idx[d]
			if !ok {
				return fmt.Errorf("plan: step %q depends on unknown step %q", n.Step.Name(), d)
			}
			if p.Nodes[j].Finalizer {
				return fmt.Errorf("plan: step %q depends on finalizer %q", n.Step.Name(), d)
			}
		}
	}
	// cycle check by DFS
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(p.Nodes))
	var visit func(i int) error
	visit = func(i int) error {
		color[i] = grey
		for _, d := range p.Nodes[i].After {
			j := idx[d]
			switch color[j] {
			case grey:
				return fmt.Errorf("plan: dependency cycle through %q and %q", p.Nodes[i].Step.Name(), d)
			case white:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		color[i] = black
		return nil
	}
	for i := range p.Nodes {
		if color[i] == white {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// Node returns the node of the named step.
func (p Plan) Node(name string) (Node, bool) {
	for _, n := range p.Nodes {
		if n.Step.Name() == name {
			return n, true
		}
	}
	return Node{}, false
}

// StepError is the error of one step of a run: it names the step, the
// server it acted on and the attempt.
type StepError struct {
	Step    string
	Server  string
	Attempt int
	Err     error
}

func (e *StepError) Error() string {
	s := "step " + e.Step
	if e.Server != "" {
		s += " on " + e.Server
	}
	if e.Attempt > 0 {
		s += fmt.Sprintf(" (attempt %d)", e.Attempt)
	}
	return s + ": " + e.Err.Error()
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrRunFailed is wrapped by the runner's error when a run stopped on a
// failed step; the run can be resumed or rolled back.
var ErrRunFailed = errors.New("run stopped on a failed step")

// ErrRunFinished is wrapped when an operation needs an unfinished run.
var ErrRunFinished = errors.New("run already finished")
