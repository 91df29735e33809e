package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takeover-dev/takeover/provider"
)

var lat = Latency{TaskStart: 10 * time.Second, RebootDoing: 60 * time.Second, MoveDoing: 20 * time.Second}

func TestRebootLandsInBootSetAtRunTime(t *testing.T) {
	e := newEnv(t, lat)
	var got []provider.Boot
	var mu sync.Mutex
	e.sim.OnReboot(func(ctx context.Context, server string, boot provider.Boot) error {
		mu.Lock()
		defer mu.Unlock()
		if server != srvA {
			return fmt.Errorf("hook for %s", server)
		}
		got = append(got, boot)
		return nil
	})
	base := "/dedicated/server/" + srvA

	if ids := string(e.must("GET", base+"/boot?bootType=rescue", nil).body); ids != "[46371,230242]" {
		t.Fatalf("rescue boots = %s", ids)
	}
	e.must("PUT", base, map[string]any{"bootId": bootR})
	r := e.must("POST", base+"/reboot", nil)
	id := taskID(t, r)
	task := fmt.Sprintf("%s/task/%d", base, id)
	if st := r.json(t)["status"]; st != "init" {
		t.Fatalf("new reboot task status %v, want init", st)
	}
	// A second reboot while the first is pending is refused.
	if r := e.call("POST", base+"/reboot", nil); r.status != 409 || r.json(t)["class"] != "Client::Conflict" {
		t.Fatalf("reboot while pending: %d %s", r.status, r.body)
	}
	e.clock.Advance(5 * time.Second)
	if st := e.taskStatus(task); st != "todo" {
		t.Fatalf("status after 5s = %s, want todo", st)
	}
	// The boot is changed before the task runs: the reboot lands there.
	e.must("PUT", base, map[string]any{"bootId": bootD})
	e.clock.Advance(5 * time.Second)
	if st := e.taskStatus(task); st != "doing" {
		t.Fatalf("status after 10s = %s, want doing", st)
	}
	e.sim.WaitHooks()
	// Changing the boot while the task is doing has no effect on it.
	e.must("PUT", base, map[string]any{"bootId": bootR})
	if st := e.taskStatus(task); st != "doing" {
		t.Fatalf("status before RebootDoing elapsed = %s, want doing", st)
	}
	e.clock.Advance(60 * time.Second)
	m := e.must("GET", task, nil).json(t)
	if m["status"] != "done" || m["doneDate"] != "2025-03-01T13:01:10+01:00" || m["function"] != "hardReboot" || m["comment"] != "Reboot asked" {
		t.Fatalf("finished task = %v", m)
	}
	if booted, _ := e.sim.Booted(srvA); booted.ID != bootD {
		t.Errorf("booted into %d, want %d", booted.ID, bootD)
	}
	// bootId is sticky: the next reboot goes to what is set now.
	e.must("POST", base+"/reboot", nil)
	e.clock.Advance(10 * time.Second)
	e.must("GET", base, nil)
	e.sim.WaitHooks()
	mu.Lock()
	kernels := []string{}
	for _, b := range got {
		kernels = append(kernels, b.Kernel)
	}
	mu.Unlock()
	if diff := cmp.Diff([]string{"rescue12-customer", "rescue-customer"}, kernels); diff != "" {
		t.Errorf("hook boots (-want +got):\n%s", diff)
	}
	if c := e.sim.Counters(); c.Reboots[srvA] != 2 || len(c.Reboots) != 1 {
		t.Errorf("counters = %v, want 2 reboots of %s", c.Reboots, srvA)
	}
	if ids := string(e.must("GET", base+"/task?function=hardReboot&status=done", nil).body); ids != fmt.Sprintf("[%d]", id) {
		t.Errorf("done hardReboot tasks = %s", ids)
	}
}

func TestHooksRunExactlyOnceUnderConcurrentPolling(t *testing.T) {
	e := newEnv(t, Latency{})
	release := make(chan struct{})
	var calls atomic.Int32
	e.sim.OnReboot(func(ctx context.Context, server string, boot provider.Boot) error {
		calls.Add(1)
		<-release
		return nil
	})
	e.sim.OnMove(func(ctx context.Context, ip netip.Prefix, from, to string) error {
		calls.Add(100)
		<-release
		return nil
	})
	rb := taskID(t, e.must("POST", "/dedicated/server/"+srvB+"/reboot", nil))
	mv := taskID(t, e.must("POST", "/ip/10.200.0.100%2F32/move", map[string]any{"to": srvB, "nexthop": nil}))
	paths := []string{
		fmt.Sprintf("/dedicated/server/%s/task/%d", srvB, rb),
		fmt.Sprintf("/ip/10.200.0.100%%2F32/task/%d", mv),
	}
	var wg sync.WaitGroup
	statuses := make(chan string, 64)
	for i := range 32 {
		wg.Go(func() {
			statuses <- e.taskStatus(paths[i%2])
		})
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != "doing" {
			t.Errorf("status while hook runs = %s, want doing", st)
		}
	}
	if e.sim.Route(fipA) != srvA {
		t.Errorf("route flipped before the move hook returned")
	}
	close(release)
	e.sim.WaitHooks()
	for _, p := range paths {
		if st := e.taskStatus(p); st != "done" {
			t.Errorf("%s status %s after hook, want done", p, st)
		}
	}
	if n := calls.Load(); n != 101 {
		t.Errorf("hook calls = %d, want one reboot (1) and one move (100)", n)
	}
	if e.sim.Route(fipA) != srvB {
		t.Errorf("route after move = %q, want %s", e.sim.Route(fipA), srvB)
	}
}

func TestHookErrorEndsInOvhError(t *testing.T) {
	e := newEnv(t, Latency{})
	e.sim.OnReboot(func(ctx context.Context, server string, boot provider.Boot) error {
		return errors.New("bmc unreachable")
	})
	e.sim.OnMove(func(ctx context.Context, ip netip.Prefix, from, to string) error {
		return errors.New("route add failed")
	})
	base := "/dedicated/server/" + srvA
	e.must("PUT", base, map[string]any{"bootId": bootR})
	rb := taskID(t, e.must("POST", base+"/reboot", nil))
	mv := taskID(t, e.must("POST", "/ip/10.200.0.100/move", map[string]any{"to": srvB}))
	e.sim.WaitHooks()
	if st := e.taskStatus(fmt.Sprintf("%s/task/%d", base, rb)); st != "ovhError" {
		t.Errorf("reboot status %s, want ovhError", st)
	}
	if st := e.taskStatus(fmt.Sprintf("/ip/10.200.0.100/task/%d", mv)); st != "ovhError" {
		t.Errorf("move status %s, want ovhError", st)
	}
	if b, _ := e.sim.Booted(srvA); b.ID != bootH {
		t.Errorf("failed reboot changed the running boot to %d", b.ID)
	}
	if r := e.sim.Route(fipA); r != srvA {
		t.Errorf("failed move changed the route to %q", r)
	}
	// A failed task no longer blocks new ones.
	e.must("POST", base+"/reboot", nil)
}

func TestFailNextTask(t *testing.T) {
	e := newEnv(t, Latency{})
	var calls atomic.Int32
	e.sim.OnReboot(func(ctx context.Context, server string, boot provider.Boot) error {
		calls.Add(1)
		return nil
	})
	e.sim.FailNextTask("hardReboot", "customerError")
	base := "/dedicated/server/" + srvA
	first := taskID(t, e.must("POST", base+"/reboot", nil))
	if st := e.taskStatus(fmt.Sprintf("%s/task/%d", base, first)); st != "customerError" {
		t.Fatalf("status %s, want customerError", st)
	}
	second := taskID(t, e.must("POST", base+"/reboot", nil))
	e.sim.WaitHooks()
	if st := e.taskStatus(fmt.Sprintf("%s/task/%d", base, second)); st != "done" {
		t.Fatalf("second reboot status %s, want done", st)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("hook calls = %d, want 1 (failed task must not run)", n)
	}
}

func TestMoveIP(t *testing.T) {
	e := newEnv(t, lat)
	var moves []string
	e.sim.OnMove(func(ctx context.Context, ip netip.Prefix, from, to string) error {
		moves = append(moves, fmt.Sprintf("%s %s->%s", ip, from, to))
		return nil
	})
	ip := "/ip/10.200.0.100%2F32"
	m := e.must("GET", ip, nil).json(t)
	if m["type"] != "failover" || m["routedTo"].(map[string]any)["serviceName"] != srvA {
		t.Fatalf("GET ip = %v", m)
	}
	dest := e.must("GET", ip+"/move", nil).json(t)
	if diff := cmp.Diff([]any{map[string]any{"service": srvB, "nexthop": nil}}, dest["dedicatedServer"]); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		body   any
		status int
	}{
		{map[string]any{"to": srvA}, 400},                       // already routed there
		{map[string]any{"to": "ns9.example"}, 400},              // unknown destination
		{map[string]any{"to": srvB, "nexthop": "1.2.3.4"}, 400}, // nexthop on a dedicated server
		{map[string]any{"to": srvB, "bogus": 1}, 400},
	} {
		if r := e.call("POST", ip+"/move", tc.body); r.status != tc.status {
			t.Errorf("move %v: %d %s, want %d", tc.body, r.status, r.body, tc.status)
		}
	}
	if r := e.call("GET", "/dedicated/server/"+srvB+"/ipCanBeMovedTo?ip=10.200.0.100/32", nil); r.status != 200 {
		t.Errorf("ipCanBeMovedTo %s: %d %s", srvB, r.status, r.body)
	}
	if r := e.call("GET", "/dedicated/server/"+srvA+"/ipCanBeMovedTo?ip=10.200.0.100/32", nil); r.status != 400 {
		t.Errorf("ipCanBeMovedTo current server: %d %s, want 400", r.status, r.body)
	}
	r := e.must("POST", ip+"/move", map[string]any{"to": srvB, "nexthop": nil})
	id := taskID(t, r)
	tm := r.json(t)
	if tm["status"] != "todo" || tm["function"] != "genericMoveFloatingIp" || tm["destination"].(map[string]any)["serviceName"] != srvB {
		t.Fatalf("move task = %v", tm)
	}
	if r := e.call("POST", "/ip/10.200.0.100/move", map[string]any{"to": srvB}); r.status != 409 {
		t.Errorf("second move while pending: %d %s, want 409", r.status, r.body)
	}
	if r := e.call("POST", "/dedicated/server/"+srvB+"/ipMove", map[string]any{"ip": fipA}); r.status != 409 {
		t.Errorf("ipMove while pending: %d %s, want 409", r.status, r.body)
	}
	task := fmt.Sprintf("%s/task/%d", ip, id)
	e.clock.Advance(10 * time.Second)
	if st := e.taskStatus(task); st != "doing" {
		t.Fatalf("status %s, want doing", st)
	}
	e.sim.WaitHooks()
	if got := e.sim.Route(fipA); got != srvA {
		t.Errorf("route flipped while doing: %s", got)
	}
	e.clock.Advance(20 * time.Second)
	if st := e.taskStatus(task); st != "done" {
		t.Fatalf("status %s, want done", st)
	}
	if got := string(e.must("GET", "/ip?routedTo.serviceName="+srvB+"&type=failover", nil).body); got != `["10.200.0.100/32"]` {
		t.Errorf("failover IPs of %s = %s", srvB, got)
	}
	if got := string(e.must("GET", "/dedicated/server/"+srvB+"/ips", nil).body); got != `["10.200.0.12/32","10.200.0.100/32"]` {
		t.Errorf("ips of %s = %s", srvB, got)
	}
	if got := string(e.must("GET", ip+"/task?function=genericMoveFloatingIp", nil).body); got != fmt.Sprintf("[%d]", id) {
		t.Errorf("ip task list = %s", got)
	}
	// The other move API: POST /dedicated/server/{dest}/ipMove.
	r = e.must("POST", "/dedicated/server/"+srvA+"/ipMove", map[string]any{"ip": "10.200.0.100/32"})
	mvTask := fmt.Sprintf("/dedicated/server/%s/task/%d", srvA, taskID(t, r))
	e.clock.Advance(30 * time.Second)
	if st := e.taskStatus(mvTask); st != "doing" {
		t.Fatalf("ipMove status %s while its hook runs, want doing", st)
	}
	e.sim.WaitHooks()
	if st := e.taskStatus(mvTask); st != "done" {
		t.Fatalf("ipMove status %s, want done", st)
	}
	if got := e.sim.Route(fipA); got != srvA {
		t.Errorf("route after ipMove = %q", got)
	}
	want := []string{fipA + " " + srvA + "->" + srvB, fipA + " " + srvB + "->" + srvA}
	if diff := cmp.Diff(want, moves); diff != "" {
		t.Errorf("move hooks (-want +got):\n%s", diff)
	}
	if c := e.sim.Counters(); c.Moves[fipA] != 2 {
		t.Errorf("move counter = %v, want 2 for %s", c.Moves, fipA)
	}
	// A server's main address is not movable.
	if r := e.call("POST", "/ip/10.200.0.11%2F32/move", map[string]any{"to": srvB}); r.status != 400 {
		t.Errorf("moving a main address: %d %s", r.status, r.body)
	}
	if r := e.call("GET", "/ip/10.9.9.9", nil); r.status != 404 || r.json(t)["class"] != "Client::NotFound" {
		t.Errorf("unknown ip: %d %s", r.status, r.body)
	}
}

func TestParkAndListLag(t *testing.T) {
	e := newEnv(t, Latency{ListLag: 3 * time.Second})
	r := e.must("POST", "/ip/10.200.0.100%2F32/park", nil)
	id := taskID(t, r)
	if r.json(t)["destination"] != nil {
		t.Errorf("park task destination = %v, want null", r.json(t)["destination"])
	}
	if got := string(e.must("GET", "/ip/10.200.0.100%2F32/task", nil).body); got != "[]" {
		t.Errorf("task list before lag = %s, want []", got)
	}
	e.clock.Advance(3 * time.Second)
	if got := string(e.must("GET", "/ip/10.200.0.100%2F32/task?status=done", nil).body); got != fmt.Sprintf("[%d]", id) {
		t.Errorf("task list after lag = %s", got)
	}
	m := e.must("GET", "/ip/10.200.0.100%2F32", nil).json(t)
	if diff := cmp.Diff(map[string]any{"serviceName": nil}, m["routedTo"]); diff != "" {
		t.Errorf("parked routedTo (-want +got):\n%s", diff)
	}
}

func TestPurgeTransient404AndCancel(t *testing.T) {
	e := newEnv(t, lat)
	base := "/dedicated/server/" + srvA
	id := taskID(t, e.must("POST", base+"/reboot", nil))
	task := fmt.Sprintf("%s/task/%d", base, id)

	e.sim.TransientTask404(2)
	for i := range 2 {
		if r := e.call("GET", task, nil); r.status != 404 {
			t.Fatalf("read %d: %d, want transient 404", i, r.status)
		}
	}
	e.must("GET", task, nil)

	// Cancel works before "doing", not after.
	if r := e.call("POST", task+"/cancel", nil); r.status != 200 || string(r.body) != "null" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if st := e.taskStatus(task); st != "cancelled" {
		t.Fatalf("status after cancel %s", st)
	}
	id2 := taskID(t, e.must("POST", base+"/reboot", nil))
	e.clock.Advance(10 * time.Second)
	if r := e.call("POST", fmt.Sprintf("%s/task/%d/cancel", base, id2), nil); r.status != 400 {
		t.Errorf("cancel while doing: %d %s, want 400", r.status, r.body)
	}

	e.sim.PurgeTask(provider.ScopeServer, srvA, id)
	if r := e.call("GET", task, nil); r.status != 404 {
		t.Errorf("purged task: %d", r.status)
	}
	if got := string(e.must("GET", base+"/task", nil).body); got != fmt.Sprintf("[%d]", id2) {
		t.Errorf("task list after purge = %s", got)
	}
	// A purged pending task still runs and still blocks.
	e.sim.PurgeTask(provider.ScopeServer, srvA, id2)
	if r := e.call("POST", base+"/reboot", nil); r.status != 409 {
		t.Errorf("reboot while purged task pending: %d, want 409", r.status)
	}
	e.clock.Advance(60 * time.Second)
	if pt, ok := e.sim.Task(provider.TaskRef{Scope: provider.ScopeServer, Owner: srvA, ID: id2}); !ok || pt.Status != "done" {
		t.Errorf("purged task = %+v %v, want done", pt, ok)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, Latency{})
	remove := e.sim.AddFault(Fault{Method: "GET", PathPrefix: "/dedicated/server", Status: 500, Count: 2})
	for i, want := range []int{500, 500, 200, 200} {
		r := e.call("GET", "/dedicated/server", nil)
		if r.status != want {
			t.Errorf("request %d: %d, want %d", i, r.status, want)
		}
	}
	remove()
	// Other methods and paths are not affected.
	defer e.sim.AddFault(Fault{PathPrefix: "/ip", Status: 503})()
	if r := e.call("GET", "/dedicated/server/"+srvA, nil); r.status != 200 {
		t.Errorf("unmatched path: %d", r.status)
	}
	if r := e.call("GET", "/ip", nil); r.status != 503 || r.header.Get("X-Ovh-QueryID") == "" {
		t.Errorf("503 fault: %d %v", r.status, r.header)
	}
}

func TestFaultRateIsSeeded(t *testing.T) {
	pattern := func() []int {
		e := newEnv(t, Latency{})
		e.sim.AddFault(Fault{Status: 429, Rate: 0.5})
		var got []int
		for range 16 {
			got = append(got, e.call("GET", "/dedicated/server", nil).status)
		}
		return got
	}
	a, b := pattern(), pattern()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed gave different fault patterns:\n%s", diff)
	}
	n := 0
	for _, s := range a {
		if s == 429 {
			n++
		}
	}
	if n == 0 || n == len(a) {
		t.Errorf("rate 0.5 affected %d of %d requests", n, len(a))
	}
}

func TestPutServer(t *testing.T) {
	e := newEnv(t, Latency{})
	base := "/dedicated/server/" + srvA
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt8Qk0bCFPbYwCNWpyyC9JJtgFrQ58jULbGQqFV1g6J rescue@takeover"
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"name":"x"}`, 400},
		{`{"powerState":"poweroff"}`, 400},
		{`{"bogus":true}`, 400},
		{`{"bootId":999}`, 400},
		{`{"bootId":"1"}`, 400},
		{`{"rescueSshKey":"not a key"}`, 400},
		{`{"monitoring":false,"bootId":999}`, 400}, // nothing applied
		{`[]`, 400},
		{``, 400},
		{`{"rescueSshKey":"` + key + `","monitoring":false,"noIntervention":true,"bootId":46371,"rescueMail":"ops@example.org"}`, 200},
	} {
		r := e.raw("PUT", base, []byte(tc.body), testApp, e.clock.Now().Unix())
		if r.status != tc.status {
			t.Errorf("PUT %s: %d %s, want %d", tc.body, r.status, r.body, tc.status)
		}
	}
	got, _ := e.sim.Server(srvA)
	want := provider.Server{
		ID: srvA, IP: netip.MustParseAddr("10.200.0.11"), BootID: bootR, RescueSSHKey: key,
		Monitoring: false, NoIntervention: true, PowerState: "poweron", State: "ok", Datacenter: "gra3",
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("server (-want +got):\n%s", diff)
	}
	m := e.must("GET", base, nil).json(t)
	if m["rescueMail"] != "ops@example.org" || m["bootId"] != float64(bootR) || m["rescueSshKey"] != key {
		t.Errorf("GET server = %v", m)
	}
	e.must("PUT", base, map[string]any{"rescueSshKey": nil})
	if m := e.must("GET", base, nil).json(t); m["rescueSshKey"] != nil {
		t.Errorf("rescueSshKey after null = %v", m["rescueSshKey"])
	}
}

func TestPowerOffBoot(t *testing.T) {
	e := newEnv(t, Latency{})
	base := "/dedicated/server/" + srvB
	e.must("PUT", base, map[string]any{"bootId": 95083})
	e.must("POST", base+"/reboot", nil)
	if m := e.must("GET", base, nil).json(t); m["powerState"] != "poweroff" {
		t.Errorf("powerState after reboot into poweroff = %v", m["powerState"])
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t, Latency{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"GET", "/dedicated/server/ns9.example", 404},
		{"DELETE", "/dedicated/server/" + srvA + "/reboot", 405},
		{"GET", "/dedicated/server/" + srvA + "/task/abc", 400},
		{"GET", "/dedicated/server/" + srvA + "/boot/12345", 404},
		{"GET", "/dedicated/server/" + srvA + "/intervention", 200},
	} {
		if r := e.call(tc.method, tc.path, nil); r.status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
		}
	}
	id, _ := e.sim.AddIntervention(srvA, "hardware_update")
	m := e.must("GET", fmt.Sprintf("/dedicated/server/%s/intervention/%d", srvA, id), nil).json(t)
	if m["type"] != "hardware_update" {
		t.Errorf("intervention = %v", m)
	}
}

// With the real clock, timers move tasks along even when nobody looks.
func TestRealClockTimersStartHooks(t *testing.T) {
	cfg := testConfig(t)
	cfg.Latency = Latency{TaskStart: 5 * time.Millisecond}
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	started := make(chan provider.Boot, 1)
	s.OnReboot(func(ctx context.Context, server string, boot provider.Boot) error {
		started <- boot
		return nil
	})
	e := &env{t: t, sim: s, srv: srv, app: testApp, now: time.Now}
	e.must("POST", "/dedicated/server/"+srvA+"/reboot", nil)
	select {
	case b := <-started:
		if b.ID != bootH {
			t.Errorf("hook boot %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reboot hook never ran without an observer")
	}
}
