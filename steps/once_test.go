package steps_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/provider/sim"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
	"github.com/takeover-dev/takeover/steps/remote/sshdtest"
)

// lostTaskStore fails, once, the journal write of a step's task handle:
// the process "dies" right after the provider accepted the reboot and
// before the task id reached the journal.
type lostTaskStore struct {
	state.Store
	mu   sync.Mutex
	lost bool
}

func (s *lostTaskStore) Append(ctx context.Context, rec state.Record) error {
	s.mu.Lock()
	if !s.lost && rec.Phase == state.PhaseNote && strings.Contains(string(rec.Out), `"reboot.task"`) {
		s.lost = true
		s.mu.Unlock()
		return errors.New("simulated crash before the task id was journalled")
	}
	s.mu.Unlock()
	return s.Store.Append(ctx, rec)
}

// TestRebootNotRepeatedWhenTaskListLags: the reboot's reply is lost to the
// journal and the provider's task list lags behind; the resumed fence waits
// for the list to show the task and adopts it instead of rebooting again.
func TestRebootNotRepeatedWhenTaskListLags(t *testing.T) {
	app, err := sim.GenerateApp()
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{
		Apps:    []sim.App{app},
		Servers: []sim.ServerConfig{{Name: gatePrimary, IP: "192.0.2.11"}, {Name: gateSpare, IP: "192.0.2.12"}},
		IPs:     []sim.IPConfig{{Block: gateIP, RoutedTo: gatePrimary}},
		// the new task shows in the task list only 3 s after it was created
		Latency: sim.Latency{TaskStart: 10 * time.Millisecond, RebootDoing: 10 * time.Millisecond, ListLag: 3 * time.Second},
	})
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	rb := gateRunbook(t, srv.URL+"/1.0")
	rb.Primary.Rescue.Key = filepath.Join(t.TempDir(), "rescue_key")
	sshdtest.GenerateKeyFile(t, rb.Primary.Rescue.Key, "ed25519")
	c, err := ovh.New(ovh.Config{Endpoint: srv.URL + "/1.0", AppKey: app.Key, AppSecret: app.Secret, ConsumerKey: app.Consumer,
		Timeout: 10 * time.Second, Poll: ovh.PollConfig{Tries: 1, Interval: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	hosts := steps.NewHosts(rb, log)
	t.Cleanup(hosts.Close)
	env := &steps.Env{Provider: c, Runbook: rb, Mode: runbooks.ModeDisaster, Hosts: hosts, Log: log,
		Poll: provider.WaitOptions{Initial: 10 * time.Millisecond, Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
	full, err := steps.BuildPlan(rb, runbooks.ModeDisaster)
	if err != nil {
		t.Fatal(err)
	}
	fence, _ := full.Node(steps.StepFence)
	fence.After = nil
	plan := steps.Plan{Nodes: []steps.Node{fence}}

	st := &lostTaskStore{Store: newStore(t)}
	r := &steps.Runner{Store: st, Log: log}
	if err := r.Start(t.Context(), steps.Header{Run: "lag"}, plan, env); err == nil {
		t.Fatal("the first attempt succeeded although its task id was never journalled")
	}
	if got := s.Counters().Reboots[gatePrimary]; got != 1 {
		t.Fatalf("after the first attempt: %d reboots, want 1", got)
	}
	if err := r.Resume(t.Context(), "lag", plan, env, nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if got := s.Counters().Reboots[gatePrimary]; got != 1 {
		t.Fatalf("after resume: %d reboots of the primary, want exactly 1 (the lagging task must be adopted, not the reboot repeated)", got)
	}
}
