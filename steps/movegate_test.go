package steps_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/provider/sim"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps"
)

const (
	gatePrimary = "ns1.ip-192-0-2-11.eu"
	gateSpare   = "ns2.ip-192-0-2-12.eu"
	gateIP      = "192.0.2.100/32"
)

// gateRunbook is a runbook whose hosts are never reached: the tests using
// it only talk to the simulator.
func gateRunbook(t *testing.T, endpoint string) *runbooks.Runbook {
	t.Helper()
	y := fmt.Sprintf(`name: gate
provider:
  kind: ovh
  endpoint: %s
primary:
  server: %s
  private_address: 10.231.0.11
  rescue:
    kernel: rescue12-customer
    key: /nonexistent/rescue_key
spare:
  server: %s
  private_address: 10.231.0.12
  ssh:
    address: 10.231.0.12:22
    key: /nonexistent/key
    known_hosts: /nonexistent/known_hosts
data:
  transport: nbd
  disks:
    - name: www
      device: /dev/sdb1
      mount: /srv/www
services:
  - name: web
    start: "true"
    stop: "true"
    health:
      - command: "true"
failover_ips:
  - %s
modes:
  disaster:
    confirm: false
`, endpoint, gatePrimary, gateSpare, gateIP)
	rb, err := runbooks.Parse("gate.yaml", []byte(y))
	if err != nil {
		t.Fatalf("gate runbook: %v", err)
	}
	return rb
}

// gateSim serves an OVH simulator on loopback with the two servers and the
// failover IP routed to the primary, and returns it with a runbook and an
// Env whose provider is the OVH client talking to it.
func gateSim(t *testing.T) (*sim.Sim, *runbooks.Runbook, *steps.Env) {
	t.Helper()
	app, err := sim.GenerateApp()
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{
		Apps: []sim.App{app},
		Servers: []sim.ServerConfig{
			{Name: gatePrimary, IP: "192.0.2.11"},
			{Name: gateSpare, IP: "192.0.2.12"},
		},
		IPs:     []sim.IPConfig{{Block: gateIP, RoutedTo: gatePrimary}},
		Latency: sim.Latency{TaskStart: 10 * time.Millisecond, MoveDoing: 10 * time.Millisecond},
	})
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	rb := gateRunbook(t, srv.URL+"/1.0")
	c, err := ovh.New(ovh.Config{Endpoint: srv.URL + "/1.0", AppKey: app.Key, AppSecret: app.Secret, ConsumerKey: app.Consumer, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	hosts := steps.NewHosts(rb, log)
	t.Cleanup(hosts.Close)
	return s, rb, &steps.Env{Provider: c, Runbook: rb, Mode: runbooks.ModeDisaster, Hosts: hosts, Log: log,
		Poll: provider.WaitOptions{Initial: 10 * time.Millisecond, Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
}

func totalMoves(s *sim.Sim) int {
	n := 0
	for _, v := range s.Counters().Moves {
		n += v
	}
	return n
}

// TestMovePlannedAfterConfirmRescue checks that in every mode's plan each
// IP move depends on confirm-rescue, directly, and that every path to it
// goes through the fence and its confirmation.
func TestMovePlannedAfterConfirmRescue(t *testing.T) {
	rb := gateRunbook(t, "http://127.0.0.1:1/1.0")
	rb.Modes.Planned.StopPrimaryServices = false // no primary.ssh in this runbook
	for _, mode := range runbooks.Modes() {
		t.Run(string(mode), func(t *testing.T) {
			plan, err := steps.BuildPlan(rb, mode)
			if err != nil {
				t.Fatal(err)
			}
			move := steps.MoveStepName(netip.MustParsePrefix(gateIP))
			n, ok := plan.Node(move)
			if !ok {
				t.Fatalf("no step %s in the plan %v", move, planNames(plan))
			}
			if !slices.Contains(n.After, steps.StepConfirmRescue) {
				t.Errorf("%s runs after %v, not after %s", move, n.After, steps.StepConfirmRescue)
			}
			// Remove confirm-rescue from the plan: the move must become
			// unreachable from the plan's roots.
			reach := map[string]bool{}
			var visit func(name string) bool
			visit = func(name string) bool {
				if name == steps.StepConfirmRescue {
					return false
				}
				if v, ok := reach[name]; ok {
					return v
				}
				n, _ := plan.Node(name)
				ok := true
				for _, a := range n.After {
					ok = visit(a) && ok
				}
				reach[name] = ok
				return ok
			}
			if visit(move) {
				t.Errorf("%s can start without %s", move, steps.StepConfirmRescue)
			}
			cr, _ := plan.Node(steps.StepConfirmRescue)
			if !slices.Contains(cr.After, steps.StepFence) {
				t.Errorf("%s runs after %v, not after %s", steps.StepConfirmRescue, cr.After, steps.StepFence)
			}
		})
	}
}

// TestMoveRefusedWithoutConfirmedFence runs the IP move step, through the
// runner, in runs where confirm-rescue is not done: alone in a plan, and
// after an operator skipped a confirm-rescue that failed. Both must fail
// with ErrNotFenced, with no move request reaching the provider.
func TestMoveRefusedWithoutConfirmedFence(t *testing.T) {
	move := steps.MoveStepName(netip.MustParsePrefix(gateIP))

	t.Run("alone", func(t *testing.T) {
		s, rb, env := gateSim(t)
		full, err := steps.BuildPlan(rb, runbooks.ModeDisaster)
		if err != nil {
			t.Fatal(err)
		}
		plan := subPlan(t, full, move)
		r := newRunner(t, newStore(t))
		err = r.Start(t.Context(), steps.Header{Run: "gate-alone", Mode: string(runbooks.ModeDisaster)}, plan, env)
		if !errors.Is(err, steps.ErrNotFenced) {
			t.Fatalf("move without confirm-rescue: %v, want ErrNotFenced", err)
		}
		if se := stepErr(t, err); se.Step != move {
			t.Errorf("failed step %s, want %s", se.Step, move)
		}
		if n := totalMoves(s); n != 0 {
			t.Errorf("the simulator accepted %d IP moves, want 0", n)
		}
		if got := s.Route(gateIP); got != gatePrimary {
			t.Errorf("%s routed to %q, want the primary", gateIP, got)
		}
	})

	t.Run("confirm-rescue skipped", func(t *testing.T) {
		s, rb, env := gateSim(t)
		full, err := steps.BuildPlan(rb, runbooks.ModeDisaster)
		if err != nil {
			t.Fatal(err)
		}
		// confirm-rescue fails at once here: the fence is not done in this run.
		plan := subPlan(t, full, steps.StepConfirmRescue, move)
		r := newRunner(t, newStore(t))
		const run = "gate-skip"
		err = r.Start(t.Context(), steps.Header{Run: run, Mode: string(runbooks.ModeDisaster)}, plan, env)
		if se := stepErr(t, err); se.Step != steps.StepConfirmRescue {
			t.Fatalf("first attempt: failed step %s, want %s: %v", se.Step, steps.StepConfirmRescue, err)
		}
		err = r.Resume(t.Context(), run, plan, env, []string{steps.StepConfirmRescue})
		if !errors.Is(err, steps.ErrNotFenced) {
			t.Fatalf("move after confirm-rescue was skipped: %v, want ErrNotFenced", err)
		}
		if n := totalMoves(s); n != 0 {
			t.Errorf("the simulator accepted %d IP moves, want 0", n)
		}
		v, err := steps.LoadRun(t.Context(), r.Store, run)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.Step(steps.StepConfirmRescue).State; got != steps.StateSkipped {
			t.Errorf("confirm-rescue %s, want skipped", got)
		}
	})
}
