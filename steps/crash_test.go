package steps_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
	"github.com/takeover-dev/takeover/steps"
)

const crashRun = "crash-run"

func TestMain(m *testing.M) {
	if os.Getenv("TAKEOVER_CRASH_CHILD") == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashChild runs or resumes the test plan in a child process, killing
// itself with SIGKILL around journal record TAKEOVER_CRASH_AT.
func crashChild() int {
	dir := os.Getenv("TAKEOVER_CRASH_DIR")
	st, err := local.Open(filepath.Join(dir, "state"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer st.Close()
	w := &world{dir: filepath.Join(dir, "world")}
	r := &steps.Runner{Store: st, Log: zerolog.Nop()}
	if at, err := strconv.ParseInt(os.Getenv("TAKEOVER_CRASH_AT"), 10, 64); err == nil {
		kill := func(seq int64) {
			if seq == at {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // never returns
			}
		}
		if os.Getenv("TAKEOVER_CRASH_WHEN") == "before" {
			r.BeforeAppend = kill
		} else {
			r.AfterAppend = kill
		}
	}
	ctx := context.Background()
	plan := testPlan(w, nil)
	_, err = st.Records(ctx, crashRun)
	switch {
	case errors.Is(err, state.ErrNotFound):
		err = r.Start(ctx, steps.Header{Run: crashRun, Runbook: "test", Mode: "drill"}, plan, &steps.Env{})
	case err == nil:
		err = r.Resume(ctx, crashRun, plan, &steps.Env{}, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func runChild(t *testing.T, dir string, at int64, when string) (killed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TAKEOVER_CRASH_CHILD=1", "TAKEOVER_CRASH_DIR="+dir,
		"TAKEOVER_CRASH_AT="+strconv.FormatInt(at, 10), "TAKEOVER_CRASH_WHEN="+when)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("child (crash at %d %s) failed: %v\n%s", at, when, err, out)
	}
	return false
}

// onceProblems lists how the world's side effects differ from "every
// effect of the test plan happened exactly once".
func onceProblems(w *world) []string {
	lines, err := w.lines()
	if err != nil {
		return []string{err.Error()}
	}
	count := map[string]int{}
	for _, l := range lines {
		count[l]++
	}
	want := []string{"do prepare", "post reboot", "do spare-prep", "do spare-disk", "do export",
		"post move-a", "post move-b", "do commit", "do finalize"}
	var probs []string
	for _, k := range want {
		if count[k] != 1 {
			probs = append(probs, fmt.Sprintf("side effect %q happened %d times, want once", k, count[k]))
		}
	}
	if len(lines) != len(want) {
		probs = append(probs, fmt.Sprintf("log has %d effects, want %d: %q", len(lines), len(want), lines))
	}
	return probs
}

// TestCrashEveryBoundary kills a run with SIGKILL just before and just after
// every journal record, resumes it in a new process, and checks that the
// run completes with every side effect applied exactly once.
func TestCrashEveryBoundary(t *testing.T) {
	// Count the records of an uninterrupted run.
	ref := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ref, "world"), 0o700); err != nil {
		t.Fatal(err)
	}
	if killed := runChild(t, ref, -1, ""); killed {
		t.Fatal("reference run was killed")
	}
	st, err := local.Open(filepath.Join(ref, "state"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Records(t.Context(), crashRun)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(recs))
	if p := onceProblems(&world{dir: filepath.Join(ref, "world")}); p != nil {
		t.Fatalf("reference run: %s", strings.Join(p, "; "))
	}

	survived, total := 0, 0
	for _, when := range []string{"before", "after"} {
		for k := int64(0); k < n; k++ {
			total++
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "world"), 0o700); err != nil {
				t.Fatal(err)
			}
			if !runChild(t, dir, k, when) {
				t.Errorf("crash %s record %d: the child was not killed", when, k)
				continue
			}
			st, err := local.Open(filepath.Join(dir, "state"))
			if err != nil {
				t.Fatal(err)
			}
			v, err := steps.LoadRun(t.Context(), st, crashRun)
			st.Close()
			if err == nil && v.Outcome == steps.OutcomeComplete {
				// killed after the very last record: nothing to resume
			} else if runChild(t, dir, -1, "") {
				t.Fatalf("crash %s record %d: the resuming child was killed", when, k)
			}
			st, err = local.Open(filepath.Join(dir, "state"))
			if err != nil {
				t.Fatal(err)
			}
			v, err = steps.LoadRun(t.Context(), st, crashRun)
			st.Close()
			if err != nil {
				t.Fatalf("crash %s record %d: %v", when, k, err)
			}
			if v.Outcome != steps.OutcomeComplete {
				t.Errorf("crash %s record %d: outcome %q after resume", when, k, v.Outcome)
				continue
			}
			if p := onceProblems(&world{dir: filepath.Join(dir, "world")}); p != nil {
				t.Errorf("crash %s record %d: %s", when, k, strings.Join(p, "; "))
				continue
			}
			survived++
		}
	}
	t.Logf("crash boundaries survived: %d/%d (%d records per run, killed before and after each)", survived, total, n)
	if survived != total {
		t.Fatalf("survived %d/%d boundaries", survived, total)
	}
}
