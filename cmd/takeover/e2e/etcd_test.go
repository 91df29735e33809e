package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/etcd/etcdtest"
)

// useEtcd starts a real etcd inside the lab's ops namespace (where the CLI
// runs) and points the world's --state at it. Every call is bounded by 2 s
// so that a stopped etcd makes the CLI fail fast.
func (w *world) useEtcd() *etcdtest.Server {
	w.t.Helper()
	srv := etcdtest.StartWith(w.t, etcdtest.Options{NetNS: w.cfg.NSPath("ops")})
	w.state = srv.URL("takeover-e2e") + "?timeout=2s"
	w.local = ""
	return srv
}

// statusJSON is what "takeover status RUN --output json" prints.
type statusJSON struct {
	Summary struct {
		Outcome string `json:"outcome"`
		Current string `json:"current"`
	} `json:"summary"`
	Locks []state.LockInfo `json:"locks"`
}

func (w *world) status(run string) statusJSON {
	w.t.Helper()
	r := w.mustCLI("status", run, "--output", "json")
	var s statusJSON
	if err := json.Unmarshal(r.stdout.Bytes(), &s); err != nil {
		w.t.Fatalf("takeover status --output json: %v\n%s", err, r.stdout.String())
	}
	return s
}

// TestEtcdHandover checks the team store: a run killed on one invocation is
// seen, with its holder, by another one, which resumes it; and a run whose
// etcd goes away stops without further side effects and is resumed once
// etcd is back.
func TestEtcdHandover(t *testing.T) {
	needE2E(t)

	t.Run("kill-then-resume-elsewhere", func(t *testing.T) {
		w := newWorld(t, "")
		w.useEtcd()
		run := "e2e-etcd-kill"
		w.clientRead()
		a := w.startCLI(append([]string{"run", w.rb, "--run-id", run}, w.driveFlags()...)...)
		w.waitJournal(a, run, `the "done" record of step fence`, hasDone("fence"))
		pidA := a.cmd.Process.Pid
		w.kill(a)
		t.Logf("killed process A (pid %d) %s after start, after the fence", pidA, a.took.Round(time.Millisecond))

		// process B sees the unfinished run and A's locks, by A's pid
		st := w.status(run)
		if st.Summary.Outcome != "unfinished" {
			t.Errorf("status outcome %q, want unfinished", st.Summary.Outcome)
		}
		if len(st.Locks) != 3 {
			t.Errorf("status shows %d locks, want 3: %+v", len(st.Locks), st.Locks)
		}
		for _, l := range st.Locks {
			if l.PID != pidA || l.Run != run || l.Op != "run" {
				t.Errorf("lock %s held by pid %d run %s op %s, want A (pid %d) run %s op run", l.Name, l.PID, l.Run, l.Op, pidA, run)
			}
		}
		// B resumes: A's pid is gone on this host, so its locks are stale
		// and taken over at once, without waiting for the 30 s lease
		w.mustCLI(append([]string{"resume", run}, w.driveFlags()...)...)
		w.checkRouted(w.cfg.Spare.Server)
		w.clientRead()
		w.checkCounters(1, 1)
		st = w.status(run)
		if st.Summary.Outcome != "complete" || len(st.Locks) != 0 {
			t.Errorf("after resume: outcome %q, locks %+v; want complete and none", st.Summary.Outcome, st.Locks)
		}
		w.tearDown()
	})

	t.Run("etcd-stops-mid-run", func(t *testing.T) {
		w := newWorld(t, "")
		srv := w.useEtcd()
		run := "e2e-etcd-down"
		w.clientRead()
		a := w.startCLI(append([]string{"run", w.rb, "--run-id", run}, w.driveFlags()...)...)
		w.waitJournal(a, run, `the "done" record of step fence`, hasDone("fence"))
		srv.Stop()
		stopped := time.Now()
		before := w.counters()
		a.wait(t, 2*time.Minute)
		t.Logf("with etcd stopped, takeover run halted after %s with exit %d", time.Since(stopped).Round(time.Millisecond), a.code)
		if a.code == 0 {
			t.Fatalf("takeover run completed without its store\n%s", a.report())
		}
		if after := w.counters(); !cmp.Equal(before, after) {
			t.Errorf("the run acted after etcd stopped: counters %+v, then %+v", before, after)
		}
		w.checkCounters(1, 0)
		w.checkRouted(w.cfg.Primary.Server)

		srv.Restart()
		w.mustCLI(append([]string{"resume", run}, w.driveFlags()...)...)
		w.checkRouted(w.cfg.Spare.Server)
		w.clientRead()
		w.checkCounters(1, 1)
		if st := w.status(run); st.Summary.Outcome != "complete" || len(st.Locks) != 0 {
			t.Errorf("after resume: outcome %q, locks %+v; want complete and none", st.Summary.Outcome, st.Locks)
		}
		w.tearDown()
	})
}
