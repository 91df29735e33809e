package steps_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/takeover-dev/takeover/steps"
)

// world is a directory that records side effects, standing in for the
// servers and the provider. Every effect is one line appended to its log.
type world struct {
	dir string
	mu  sync.Mutex
}

func (w *world) logEffect(line string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(w.dir, "log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (w *world) lines() ([]string, error) {
	f, err := os.Open(filepath.Join(w.dir, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// has reports whether name's effect is in place: the last log line about
// it applies it. Because an effect is one appended line, applying it and
// making it observable are a single write, as for a real provider call.
func (w *world) has(name string) bool {
	lines, err := w.lines()
	if err != nil {
		return false
	}
	in := false
	for _, l := range lines {
		_, step, _ := strings.Cut(l, " ")
		if step == name {
			in = !strings.HasPrefix(l, "undo ")
		}
	}
	return in
}

// effectStep applies a plain idempotent effect. Its Check observes the world.
type effectStep struct {
	name string
	w    *world
	fail func(name string) error // injected failure, may be nil
}

func (s *effectStep) Name() string { return s.name }
func (s *effectStep) Check(ctx context.Context, e *steps.Env) (bool, error) {
	return s.w.has(s.name), nil
}
func (s *effectStep) Do(ctx context.Context, e *steps.Env) error {
	if s.fail != nil {
		if err := s.fail(s.name); err != nil {
			return err
		}
	}
	return s.w.logEffect("do " + s.name)
}
func (s *effectStep) Undo(ctx context.Context, e *steps.Env) error {
	if !s.w.has(s.name) {
		return steps.ErrNoUndo
	}
	return s.w.logEffect("undo " + s.name)
}

// taskStep models a non-idempotent provider call (a reboot): Do "posts" a
// request that creates a task, journals which one, and waits for it. A
// crash between the post and the journal write is resolved by observing the
// world, never by posting again.
type taskStep struct {
	name string
	w    *world
	fail func(name string) error
}

func (s *taskStep) Name() string { return s.name }
func (s *taskStep) Check(ctx context.Context, e *steps.Env) (bool, error) {
	return s.w.has(s.name), nil
}
func (s *taskStep) Do(ctx context.Context, e *steps.Env) error {
	if s.fail != nil {
		if err := s.fail(s.name); err != nil {
			return err
		}
	}
	if !s.w.has(s.name) {
		if err := s.w.logEffect("post " + s.name); err != nil {
			return err
		}
	}
	if err := e.Save(ctx, "task", s.name); err != nil {
		return err
	}
	return e.Waiting(ctx, "task of "+s.name)
}
func (s *taskStep) Undo(ctx context.Context, e *steps.Env) error {
	if !s.w.has(s.name) {
		return steps.ErrNoUndo
	}
	return s.w.logEffect("undo " + s.name)
}

// testPlan: prepare → (fence-like task ‖ spare-prep ‖ spare-disk) → export → ip-move task → commit,
// with a finalizer.
func testPlan(w *world, fail func(string) error) steps.Plan {
	eff := func(n string) steps.Step { return &effectStep{name: n, w: w, fail: fail} }
	task := func(n string) steps.Step { return &taskStep{name: n, w: w, fail: fail} }
	return steps.Plan{Nodes: []steps.Node{
		{Step: eff("prepare")},
		{Step: task("reboot"), After: []string{"prepare"}, Server: "primary"},
		{Step: eff("spare-prep"), After: []string{"prepare"}, Server: "spare"},
		{Step: eff("spare-disk"), After: []string{"prepare"}, Server: "spare"},
		{Step: eff("export"), After: []string{"reboot", "spare-prep", "spare-disk"}, Server: "primary"},
		{Step: task("move-a"), After: []string{"export"}},
		{Step: task("move-b"), After: []string{"export"}},
		{Step: eff("commit"), After: []string{"move-a", "move-b"}},
		{Step: eff("finalize"), Finalizer: true},
	}}
}
