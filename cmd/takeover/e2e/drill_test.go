package e2e

import (
	"strings"
	"testing"
)

// TestDrill runs the lab runbook in drill mode: a full takeover, the
// automatic failback, then the report; the world ends as it began.
func TestDrill(t *testing.T) {
	needE2E(t)
	w := newWorld(t, "")
	w.clientRead()
	r := w.mustCLI(append([]string{"run", w.rb, "--mode", "drill", "--run-id", "e2e-drill"}, w.driveFlags()...)...)
	out := r.stdout.String()
	for _, want := range []string{
		"takeover e2e-drill: complete",
		"drill: failing back",
		"drill report e2e-drill",
		"takeover (start to commit, without people's waits)",
		"outcome rolled-back",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("drill output lacks %q:\n%s", want, out)
		}
	}
	// one reboot into rescue and one back; one move there and one back
	w.checkCounters(2, 2)
	w.checkRouted(w.cfg.Primary.Server)
	if got := w.primary(); got != "normal" {
		t.Errorf("primary personality after the drill: %s, want normal", got)
	}
	w.clientRead()
	if left := w.lockFiles(); len(left) != 0 {
		t.Errorf("lock files left after the drill: %+v", left)
	}
	w.tearDown()
}

// TestPlanned runs the lab runbook in planned mode: the services are
// stopped gracefully on the healthy primary before the fence; the takeover
// completes, and fails back.
func TestPlanned(t *testing.T) {
	needE2E(t)
	w := newWorld(t, "")
	w.clientRead()
	r := w.mustCLI(append([]string{"run", w.rb, "--mode", "planned", "--run-id", "e2e-planned"}, w.driveFlags()...)...)
	out := r.stdout.String()
	stop := strings.Index(out, "done     stop-primary-services")
	fence := strings.Index(out, "start    fence")
	if stop < 0 || fence < 0 || stop > fence {
		t.Errorf("the primary's services were not stopped before the fence:\n%s", out)
	}
	w.checkCounters(1, 1)
	w.checkRouted(w.cfg.Spare.Server)
	w.clientRead() // through the failover IP, from the spare
	w.mustCLI(append([]string{"failback", "e2e-planned"}, w.driveFlags()...)...)
	w.checkCounters(2, 2)
	w.checkRouted(w.cfg.Primary.Server)
	w.clientRead()
	w.tearDown()
}
