package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/takeover-dev/takeover/provider/sim/lab"
	"github.com/takeover-dev/takeover/state"
)

// killPoint is where in its journal a run is killed.
type killPoint struct {
	name string
	what string
	at   func([]state.Record) bool
	// moves is how many moves of the failover IP a rollback from here
	// leaves counted: a move in flight is finished and moved back.
	rollbackMoves int
}

var killPoints = []killPoint{
	{name: "after-fence", what: `the "done" record of step fence`, at: hasDone("fence")},
	{name: "after-export", what: `the "done" record of step export`, at: hasDone("export")},
	{name: "during-ip-move", what: "a move-ip-* step waiting on its task and not done", at: moveInFlight, rollbackMoves: 2},
}

// TestKillAndRecover kills "takeover run" with SIGKILL at each kill point,
// then either resumes it (and fails back) or rolls it back, in a fresh lab
// each time, and checks the world.
func TestKillAndRecover(t *testing.T) {
	needE2E(t)
	for _, kp := range killPoints {
		for _, variant := range []string{"resume", "rollback"} {
			t.Run(kp.name+"/"+variant, func(t *testing.T) {
				w := newWorld(t, "")
				run := "e2e-" + kp.name + "-" + variant
				var watch *watcher
				if variant == "resume" {
					watch = w.watchClient()
				}
				pid := w.killRunAt(run, kp)
				// the killed holder's lock files are still there: stale
				// (dead pid on this host), to be taken over
				locks := w.lockFiles()
				if len(locks) != 3 {
					t.Errorf("after the kill: %d lock files, want 3 (both servers and the IP): %+v", len(locks), locks)
				}
				for _, l := range locks {
					if l.PID != pid || l.Run != run {
						t.Errorf("lock %s held by pid %d run %s, want the killed pid %d run %s", l.Name, l.PID, l.Run, pid, run)
					}
				}
				switch variant {
				case "resume":
					w.resumeAndFailBack(run, watch)
				case "rollback":
					w.rollBack(run, kp)
				}
				if left := w.lockFiles(); len(left) != 0 {
					t.Errorf("lock files left after %s: %+v", variant, left)
				}
				w.tearDown()
			})
		}
	}
}

// killRunAt starts a run, waits until its journal reaches kp, kills it with
// SIGKILL and returns the killed pid.
func (w *world) killRunAt(run string, kp killPoint) int {
	w.t.Helper()
	w.clientRead() // served by the primary before anything happens
	w.checkRouted(w.cfg.Primary.Server)
	r := w.startCLI(append([]string{"run", w.rb, "--run-id", run}, w.driveFlags()...)...)
	w.waitJournal(r, run, kp.what, kp.at)
	pid := r.cmd.Process.Pid
	w.kill(r)
	w.t.Logf("killed takeover run (pid %d) %s after start at %s", pid, r.took.Round(time.Millisecond), kp.name)
	recs, err := w.records(w.t.Context(), run)
	if err != nil {
		w.t.Fatal(err)
	}
	if !kp.at(recs) || finished(recs) {
		w.t.Fatalf("journal after the kill: want %s and an unfinished run; last record %+v", kp.what, recs[len(recs)-1])
	}
	if kp.name == "during-ip-move" && !moveInFlight(recs) {
		w.t.Fatal("the move finished before the kill")
	}
	return pid
}

// resumeAndFailBack resumes a killed run to completion, checks the spare
// serves through the failover IP after exactly one reboot and one move,
// then fails back and checks the primary serves again.
func (w *world) resumeAndFailBack(run string, watch *watcher) {
	w.t.Helper()
	w.mustCLI(append([]string{"resume", run}, w.driveFlags()...)...)
	w.t.Logf("client during run, kill and resume: %s", watch.stop())
	if len(watch.outs) == 0 && !watch.open {
		w.t.Errorf("the client saw no outage although the primary was fenced")
	}
	w.checkRouted(w.cfg.Spare.Server)
	if p := w.primary(); p != lab.PersonalityRescue {
		w.t.Errorf("primary is %q after the takeover, want %s (fenced)", p, lab.PersonalityRescue)
	}
	w.clientRead()
	w.checkCounters(1, 1)
	w.checkStatus(run, "complete")

	watch = w.watchClient()
	w.mustCLI(append([]string{"failback", run}, w.driveFlags()...)...)
	w.t.Logf("client during failback: %s", watch.stop())
	if len(watch.outs) == 0 && !watch.open {
		w.t.Errorf("the client saw no outage although the failback rebooted the primary")
	}
	w.checkRouted(w.cfg.Primary.Server)
	if p := w.primary(); p != lab.PersonalityNormal {
		w.t.Errorf("primary is %q after failback, want %s", p, lab.PersonalityNormal)
	}
	w.clientRead()
	w.checkCounters(2, 2)
	w.checkClean()
}

// rollBack undoes a killed run and checks the world is as before it.
func (w *world) rollBack(run string, kp killPoint) {
	w.t.Helper()
	w.mustCLI(append([]string{"rollback", run}, w.driveFlags()...)...)
	w.checkRouted(w.cfg.Primary.Server)
	if p := w.primary(); p != lab.PersonalityNormal {
		w.t.Errorf("primary is %q after rollback, want %s", p, lab.PersonalityNormal)
	}
	w.clientRead()
	// the fence's reboot and the reboot back to disk; a move in flight at
	// the kill was finished and moved back
	w.checkCounters(2, kp.rollbackMoves)
	w.checkStatus(run, "rolled-back")
	w.checkClean()
}

// checkClean asserts no export or import is left: no nbd-server or nbdfuse
// in the lab, nothing mounted on the spare's mount point or FUSE directory.
func (w *world) checkClean() {
	w.t.Helper()
	if ps := w.labProcs("nbd-server", "nbdfuse", "nbdkit"); len(ps) > 0 {
		w.t.Errorf("NBD processes left: %v", ps)
	}
	p := w.cfg.Paths()
	if ms := mountsAt(w.t, p.SpareMount, p.SpareFUSE); len(ms) > 0 {
		w.t.Errorf("mounts left on the spare: %v", ms)
	}
	if ents, err := os.ReadDir(p.SpareFUSE); err == nil && len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		w.t.Logf("spare FUSE directory holds %v", names)
	}
}

// checkStatus asserts "takeover status RUN" reports the outcome.
func (w *world) checkStatus(run, outcome string) {
	w.t.Helper()
	r := w.mustCLI("status", run)
	if want := "outcome: " + outcome; !strings.Contains(r.stdout.String(), want) {
		w.t.Errorf("takeover status %s: no %q in\n%s", run, want, r.stdout.String())
	}
}
