package steps_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
	"github.com/takeover-dev/takeover/steps"
)

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{dir: filepath.Join(t.TempDir(), "world")}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return w
}

func newStore(t *testing.T) state.Store {
	t.Helper()
	st, err := local.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRunner(t *testing.T, st state.Store) *steps.Runner {
	return &steps.Runner{Store: st, Log: zerolog.New(zerolog.NewTestWriter(t))}
}

var errInjected = errors.New("injected failure")

// TestRollbackAfterFailureAtEachStep fails the run at each step in turn,
// rolls it back, and checks the world is as before the run, with the
// finalizer run exactly once.
func TestRollbackAfterFailureAtEachStep(t *testing.T) {
	names := []string{"prepare", "reboot", "spare-prep", "spare-disk", "export", "move-a", "move-b", "commit"}
	for _, failAt := range names {
		t.Run(failAt, func(t *testing.T) {
			w := newWorld(t)
			st := newStore(t)
			r := newRunner(t, st)
			fail := func(n string) error {
				if n == failAt {
					return errInjected
				}
				return nil
			}
			plan := testPlan(w, fail)
			err := r.Start(t.Context(), steps.Header{Run: "r", Mode: "drill"}, plan, &steps.Env{})
			if !errors.Is(err, errInjected) || !errors.Is(err, steps.ErrRunFailed) {
				t.Fatalf("start: got %v, want the injected failure", err)
			}
			var serr *steps.StepError
			if !errors.As(err, &serr) || serr.Step != failAt {
				t.Fatalf("start: error %v does not name step %s", err, failAt)
			}
			if err := r.Rollback(t.Context(), "r", plan, &steps.Env{}); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			for _, n := range names {
				if w.has(n) {
					t.Errorf("effect of %s still in place after rollback", n)
				}
			}
			lines, _ := w.lines()
			done := map[string]bool{}
			_ = done
			finals := 0
			for _, l := range lines {
				verb, step, _ := strings.Cut(l, " ")
				switch verb {
				case "do", "post":
					if step == "finalize" {
						finals++
						continue
					}
					done[step] = true
				case "undo":
					if !done[step] {
						t.Errorf("undo of %s without its effect: %q", step, lines)
					}
					delete(done, step)
				}
			}
			if len(done) != 0 {
				t.Errorf("effects never undone: %v (log %q)", done, lines)
			}
			if finals != 1 {
				t.Errorf("finalizer ran %d times, want 1 (log %q)", finals, lines)
			}
			v, err := steps.LoadRun(t.Context(), st, "r")
			if err != nil {
				t.Fatal(err)
			}
			if v.Outcome != steps.OutcomeRolledBack {
				t.Errorf("outcome %q, want %q", v.Outcome, steps.OutcomeRolledBack)
			}
			// A second rollback is refused: the run is finished.
			if err := r.Rollback(t.Context(), "r", plan, &steps.Env{}); !errors.Is(err, steps.ErrRunFinished) {
				t.Errorf("second rollback: %v, want ErrRunFinished", err)
			}
		})
	}
}

// TestResumeAfterFailure retries the failed step and completes.
func TestResumeAfterFailure(t *testing.T) {
	w := newWorld(t)
	st := newStore(t)
	r := newRunner(t, st)
	broken := true
	plan := testPlan(w, func(n string) error {
		if n == "export" && broken {
			return errInjected
		}
		return nil
	})
	if err := r.Start(t.Context(), steps.Header{Run: "r"}, plan, &steps.Env{}); !errors.Is(err, errInjected) {
		t.Fatalf("start: %v", err)
	}
	v, _ := steps.LoadRun(t.Context(), st, "r")
	if got := v.Step("export"); got.State != steps.StateFailed || got.Attempt != 1 {
		t.Fatalf("export: %+v", got)
	}
	if got := v.Step("commit").State; got != steps.StatePending {
		t.Fatalf("commit state %s, want pending", got)
	}
	broken = false
	if err := r.Resume(t.Context(), "r", plan, &steps.Env{}, nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	v, _ = steps.LoadRun(t.Context(), st, "r")
	if v.Outcome != steps.OutcomeComplete || v.Step("export").Attempt != 2 {
		t.Fatalf("outcome %q export %+v", v.Outcome, v.Step("export"))
	}
	if p := onceProblems(w); p != nil {
		t.Fatal(p)
	}
	if err := r.Resume(t.Context(), "r", plan, &steps.Env{}, nil); !errors.Is(err, steps.ErrRunFinished) {
		t.Fatalf("resume of a finished run: %v", err)
	}
}

// TestResumeSkip journals an operator's skip and runs dependents.
func TestResumeSkip(t *testing.T) {
	w := newWorld(t)
	st := newStore(t)
	r := newRunner(t, st)
	plan := testPlan(w, func(n string) error {
		if n == "spare-disk" {
			return errInjected
		}
		return nil
	})
	if err := r.Start(t.Context(), steps.Header{Run: "r"}, plan, &steps.Env{}); !errors.Is(err, errInjected) {
		t.Fatalf("start: %v", err)
	}
	if err := r.Resume(t.Context(), "r", plan, &steps.Env{}, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "no such step") {
		t.Fatalf("skip of unknown step: %v", err)
	}
	if err := r.Resume(t.Context(), "r", plan, &steps.Env{}, []string{"spare-disk"}); err != nil {
		t.Fatalf("resume --skip: %v", err)
	}
	v, _ := steps.LoadRun(t.Context(), st, "r")
	if v.Step("spare-disk").State != steps.StateSkipped || v.Outcome != steps.OutcomeComplete {
		t.Fatalf("spare-disk %s outcome %s", v.Step("spare-disk").State, v.Outcome)
	}
}

// TestResumeRechecksDone: a done step whose effect vanished is run again.
func TestResumeRechecksDone(t *testing.T) {
	w := newWorld(t)
	st := newStore(t)
	r := newRunner(t, st)
	plan := testPlan(w, func(n string) error {
		if n == "commit" {
			return errInjected
		}
		return nil
	})
	_ = r.Start(t.Context(), steps.Header{Run: "r"}, plan, &steps.Env{})
	if err := w.logEffect("undo export"); err != nil { // the world changed behind the journal
		t.Fatal(err)
	}
	plan = testPlan(w, nil)
	if err := r.Resume(t.Context(), "r", plan, &steps.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	lines, _ := w.lines()
	n := 0
	for _, l := range lines {
		if l == "do export" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("export ran %d times, want 2 (re-run after its effect vanished): %q", n, lines)
	}
}

// TestParallelStepsOverlap proves independent steps run at the same time:
// each of three steps waits until all three have started.
func TestParallelStepsOverlap(t *testing.T) {
	st := newStore(t)
	r := newRunner(t, st)
	started := make(chan string, 3)
	all := make(chan struct{})
	var gates []steps.Node
	for _, n := range []string{"a", "b", "c"} {
		gates = append(gates, steps.Node{Step: &gateStep{name: n, started: started, all: all}})
	}
	go func() {
		for range 3 {
			<-started
		}
		close(all)
	}()
	// Steps run one at a time would wait for each other forever: bound it so
	// the test fails instead of hanging.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := r.Start(ctx, steps.Header{Run: "p"}, steps.Plan{Nodes: gates}, &steps.Env{}); err != nil {
		t.Fatalf("independent steps did not run in parallel: %v", err)
	}
}

type gateStep struct {
	name    string
	started chan string
	all     chan struct{}
	did     bool
}

func (g *gateStep) Name() string { return g.name }
func (g *gateStep) Check(ctx context.Context, e *steps.Env) (bool, error) {
	return g.did, nil
}
func (g *gateStep) Do(ctx context.Context, e *steps.Env) error {
	g.started <- g.name
	select {
	case <-g.all:
		g.did = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (g *gateStep) Undo(ctx context.Context, e *steps.Env) error { return steps.ErrNoUndo }

// TestInterruptStopsNewWork cancels the context during a step: no later
// step starts, the journal records the failure, and the run resumes.
func TestInterruptStopsNewWork(t *testing.T) {
	w := newWorld(t)
	st := newStore(t)
	r := newRunner(t, st)
	ctx, cancel := context.WithCancel(t.Context())
	plan := testPlan(w, func(n string) error {
		if n == "export" {
			cancel()
			return context.Canceled
		}
		return nil
	})
	err := r.Start(ctx, steps.Header{Run: "r"}, plan, &steps.Env{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if w.has("move-a") || w.has("commit") {
		t.Fatal("a step started after the interrupt")
	}
	if err := r.Resume(t.Context(), "r", testPlan(w, nil), &steps.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	if p := onceProblems(w); p != nil {
		t.Fatal(p)
	}
}

func TestPlanValidate(t *testing.T) {
	w := &world{}
	eff := func(n string, after ...string) steps.Node {
		return steps.Node{Step: &effectStep{name: n, w: w}, After: after}
	}
	tests := []struct {
		name string
		plan steps.Plan
		want string
	}{
		{"dup", steps.Plan{Nodes: []steps.Node{eff("a"), eff("a")}}, `step "a" appears twice`},
		{"unknown dep", steps.Plan{Nodes: []steps.Node{eff("a", "x")}}, `unknown step "x"`},
		{"cycle", steps.Plan{Nodes: []steps.Node{eff("a", "b"), eff("b", "a")}}, "cycle"},
		{"ok", steps.Plan{Nodes: []steps.Node{eff("a"), eff("b", "a")}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.plan.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatal(cmp.Diff(tc.want, got))
			}
		})
	}
}
