package steps_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
	"github.com/takeover-dev/takeover/steps/remote"
	"github.com/takeover-dev/takeover/steps/remote/sshdtest"
	"golang.org/x/crypto/ssh"
)

// rescueHostKey reads the host key of the lab's current rescue boot.
func (e *labEnv) rescueHostKey() (ssh.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(e.paths.Rescue, "ssh_host_ed25519_key.pub"))
	if err != nil {
		return nil, fmt.Errorf("read the rescue host key: %w", err)
	}
	return remote.ParseAuthorizedKey(string(b))
}

// TestRescueSSHAgainstOpenSSH runs the fence and confirm-rescue steps
// against the lab's real OpenSSH rescue system: the rescue host key seen
// on first contact is journalled before anything else happens over that
// connection and pinned for the run; a rescue system that comes back with
// another host key (a second reboot into rescue) is refused by the next
// step that talks to it; a rescue key the rescue system does not accept
// fails with an authentication error naming the address.
func TestRescueSSHAgainstOpenSSH(t *testing.T) {
	needLab(t)
	e := startLab(t)
	rb := e.runbook(t, runbooks.TransportNBD)
	full, err := steps.BuildPlan(rb, runbooks.ModeDisaster)
	if err != nil {
		t.Fatal(err)
	}
	rescueAddr := rb.Primary.Address.String() + ":22"

	t.Run("host key pinned, change refused", func(t *testing.T) {
		ctx := t.Context()
		env := e.env(t, rb)
		plan := subPlan(t, full, steps.StepFence, steps.StepConfirmRescue, steps.StepDisks)
		var (
			mu               sync.Mutex
			first, second    ssh.PublicKey
			rebootErr        error
			rebootsAtConfirm int
		)
		evs := &events{on: func(ev steps.Event) {
			if ev.Step != steps.StepConfirmRescue || ev.State != steps.StateDone || ev.Rollback {
				return
			}
			// The rescue system boots again before the next step reaches it:
			// OVH keeps the rescue netboot, so it comes back in rescue, with a
			// fresh host key.
			mu.Lock()
			defer mu.Unlock()
			var err error
			if first, err = e.rescueHostKey(); err != nil {
				rebootErr = err
				return
			}
			rebootsAtConfirm = e.sim.Counters().Reboots[rb.Primary.Server]
			ref, err := e.prov.Reboot(ctx, provider.ServerID(rb.Primary.Server))
			if err == nil {
				_, err = provider.WaitTask(ctx, e.prov, ref, env.Poll)
			}
			if err == nil {
				second, err = e.rescueHostKey()
			}
			rebootErr = err
		}}
		r := newLabRunner(t, evs)
		err := r.Start(ctx, steps.Header{Run: "tks-hostkey", Mode: string(runbooks.ModeDisaster)}, plan, env)
		mu.Lock()
		defer mu.Unlock()
		if rebootErr != nil {
			t.Fatalf("second reboot into rescue: %v", rebootErr)
		}
		if first == nil || second == nil {
			t.Fatalf("confirm-rescue never finished: %v", err)
		}
		if string(first.Marshal()) == string(second.Marshal()) {
			t.Fatal("the second rescue boot kept the host key; the test proves nothing")
		}
		if rebootsAtConfirm != 1 {
			t.Errorf("reboots when confirm-rescue was done: %d, want 1 (the fence's)", rebootsAtConfirm)
		}

		// The first host key is in the journal, recorded before the proof.
		v, lerr := steps.LoadRun(ctx, r.Store, "tks-hostkey")
		if lerr != nil {
			t.Fatal(lerr)
		}
		var journalled string
		if raw, ok := v.Step(steps.StepConfirmRescue).Notes["hostKey"]; !ok {
			t.Fatalf("no hostKey note in the journal of confirm-rescue: %v", v.Step(steps.StepConfirmRescue).Notes)
		} else if err := json.Unmarshal(raw, &journalled); err != nil {
			t.Fatal(err)
		}
		jk, perr := remote.ParseAuthorizedKey(journalled)
		if perr != nil {
			t.Fatalf("journalled host key %q: %v", journalled, perr)
		}
		if string(jk.Marshal()) != string(first.Marshal()) {
			t.Errorf("journalled host key %s, the rescue boot's is %s", remote.Fingerprint(jk), remote.Fingerprint(first))
		}
		keySeq, proofSeq := noteSeq(v.Records, steps.StepConfirmRescue, "hostKey"), noteSeq(v.Records, steps.StepConfirmRescue, "proof")
		if keySeq < 0 || proofSeq < 0 || keySeq > proofSeq {
			t.Errorf("hostKey note at record %d, proof at %d: the key must be journalled first", keySeq, proofSeq)
		}

		// The next step that talks to the rescue system refuses the new key.
		if err == nil {
			t.Fatal("the run went on after the rescue system's host key changed")
		}
		if se := stepErr(t, err); se.Step != steps.StepDisks {
			t.Errorf("failed step %s, want %s: %v", se.Step, steps.StepDisks, err)
		}
		if !errors.Is(err, steps.ErrRunFailed) || !errors.Is(err, remote.ErrHostKeyMismatch) {
			t.Errorf("error %v: want ErrRunFailed and remote.ErrHostKeyMismatch", err)
		}
		msg := err.Error()
		for _, want := range []string{"host key", rescueAddr, remote.Fingerprint(first), remote.Fingerprint(second)} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		if got := v.Step(steps.StepDisks).State; got != steps.StateFailed {
			t.Errorf("disks step %s in the journal, want failed", got)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("wrong rescue key", func(t *testing.T) {
		ctx := t.Context()
		env := e.env(t, rb)
		plan := subPlan(t, full, steps.StepFence, steps.StepConfirmRescue)
		other := filepath.Join(t.TempDir(), "other_ed25519")
		sshdtest.GenerateKeyFile(t, other, "ed25519")
		var swapped error = errors.New("not swapped")
		evs := &events{on: func(ev steps.Event) {
			// The fence sets rescueSshKey from the runbook's key and reboots;
			// then the key file changes: the rescue system accepts the old one only.
			if ev.Step == steps.StepFence && ev.State == steps.StateDone && !ev.Rollback {
				swapped = os.Rename(other, e.rescueKey)
			}
		}}
		r := newLabRunner(t, evs)
		err := r.Start(ctx, steps.Header{Run: "tks-wrongkey", Mode: string(runbooks.ModeDisaster)}, plan, env)
		if swapped != nil {
			t.Fatalf("swap the rescue key after the fence: %v (run: %v)", swapped, err)
		}
		if err == nil {
			t.Fatal("confirm-rescue succeeded with a key the rescue system does not accept")
		}
		if se := stepErr(t, err); se.Step != steps.StepConfirmRescue {
			t.Errorf("failed step %s, want %s: %v", se.Step, steps.StepConfirmRescue, err)
		}
		if !errors.Is(err, remote.ErrAuth) {
			t.Errorf("error %v: want remote.ErrAuth", err)
		}
		if errors.Is(err, remote.ErrHostKeyMismatch) {
			t.Errorf("error %v: an authentication failure reported as a host key mismatch", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "root@"+rescueAddr) || !strings.Contains(msg, rb.Primary.Server) {
			t.Errorf("error %q does not name root@%s and the server %s", msg, rescueAddr, rb.Primary.Server)
		}
		if n := e.sim.Counters().Reboots[rb.Primary.Server]; n != 3 {
			t.Errorf("reboots of the primary: %d, want 3 (two fences and the test's)", n)
		}
		t.Logf("refused: %v", err)
	})
}

// noteSeq is the sequence number of the first note record of step that
// holds key, or -1.
func noteSeq(recs []state.Record, step, key string) int64 {
	for _, r := range recs {
		if r.Step != step || r.Phase != state.PhaseNote {
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(r.Out, &m) == nil {
			if _, ok := m[key]; ok {
				return r.Seq
			}
		}
	}
	return -1
}
