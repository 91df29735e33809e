package providertest

import (
	"crypto/ed25519"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/takeover-dev/takeover/provider"
)

// Harness describes the world an implementation is tested against.
type Harness struct {
	// New returns a provider wired to a fresh world in which IP is routed
	// to Primary and no task is pending. With ReadOnly it may return the
	// same world every time.
	New func(t *testing.T) World
	// Primary and Spare are two servers of the world; Spare may be empty
	// (move checks are then skipped).
	Primary, Spare provider.ServerID
	// IP is a failover IP routed to Primary; zero skips the IP checks.
	IP netip.Prefix
	// RescueKernel names the rescue netboot to choose (default
	// "rescue-customer").
	RescueKernel string
	// Unknown names a server that does not exist (default
	// "ns0.unknown.invalid").
	Unknown provider.ServerID
	// ReadOnly restricts the suite to calls without side effects.
	ReadOnly bool
	// Wait is given to provider.WaitTask; worlds with fast tasks use
	// millisecond polling.
	Wait provider.WaitOptions
}

// World is one provider instance and what the suite may inspect of the
// world behind it. Nil hooks skip the checks that need them.
type World struct {
	Provider provider.Provider
	// Reboots counts reboots a server actually went through.
	Reboots func(provider.ServerID) int
	// Moves counts moves an IP actually went through.
	Moves func(netip.Prefix) int
	// Booted reports the netboot a server last came up in.
	Booted func(provider.ServerID) (provider.Boot, bool)
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	if h.RescueKernel == "" {
		h.RescueKernel = "rescue-customer"
	}
	if h.Unknown == "" {
		h.Unknown = "ns0.unknown.invalid"
	}
	s := suite{h}
	t.Run("Server", s.server)
	t.Run("UnknownServer", s.unknownServer)
	t.Run("Boots", s.boots)
	t.Run("TaskUnknown", s.taskUnknown)
	t.Run("Routes", s.routes)
	t.Run("UpdateServerIdempotent", s.mutating(s.updateServer))
	t.Run("RebootIntoRescue", s.mutating(s.reboot))
	t.Run("RebootWhileBusy", s.mutating(s.rebootBusy))
	t.Run("MoveIP", s.mutating(s.moveIP))
	t.Run("MoveIPToCurrentRoute", s.mutating(s.moveNoop))
	t.Run("MoveIPToUnknownServer", s.mutating(s.moveUnknown))
}

type suite struct{ h Harness }

func (s suite) mutating(f func(*testing.T)) func(*testing.T) {
	return func(t *testing.T) {
		if s.h.ReadOnly {
			t.Skip("read-only run")
		}
		f(t)
	}
}

func wantErrIs(t *testing.T, what string, err, target error, names ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want one wrapping %q", what, err, target)
		return
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error %q does not name %q", what, err, n)
		}
	}
}

func (s suite) server(t *testing.T) {
	w := s.h.New(t)
	got, err := w.Provider.Server(t.Context(), s.h.Primary)
	if err != nil {
		t.Fatalf("Server(%s): %v", s.h.Primary, err)
	}
	if got.ID != s.h.Primary {
		t.Errorf("Server(%s).ID = %q", s.h.Primary, got.ID)
	}
	if !got.IP.IsValid() {
		t.Errorf("Server(%s).IP is not set", s.h.Primary)
	}
}

func (s suite) unknownServer(t *testing.T) {
	w := s.h.New(t)
	p, id, ctx := w.Provider, s.h.Unknown, t.Context()
	_, err := p.Server(ctx, id)
	wantErrIs(t, "Server", err, provider.ErrNotFound, string(id))
	_, err = p.Boots(ctx, id)
	wantErrIs(t, "Boots", err, provider.ErrNotFound, string(id))
	_, err = p.ServerIPs(ctx, id)
	wantErrIs(t, "ServerIPs", err, provider.ErrNotFound, string(id))
	_, err = p.Tasks(ctx, provider.ScopeServer, string(id), "hardReboot")
	wantErrIs(t, "Tasks", err, provider.ErrNotFound, string(id))
	if s.h.ReadOnly {
		return
	}
	bootID := int64(1)
	err = p.UpdateServer(ctx, id, provider.ServerUpdate{BootID: &bootID})
	wantErrIs(t, "UpdateServer", err, provider.ErrNotFound, string(id))
	_, err = p.Reboot(ctx, id)
	wantErrIs(t, "Reboot", err, provider.ErrNotFound, string(id))
}

func (s suite) boots(t *testing.T) {
	w := s.h.New(t)
	boots, err := w.Provider.Boots(t.Context(), s.h.Primary)
	if err != nil {
		t.Fatalf("Boots(%s): %v", s.h.Primary, err)
	}
	if _, err := provider.FindBoot(boots, "hd"); err != nil {
		t.Errorf("no hard-disk boot: %v", err)
	}
	b, err := provider.FindBoot(boots, s.h.RescueKernel)
	if err != nil {
		t.Fatalf("no rescue boot: %v", err)
	}
	if b.Type != "rescue" || b.ID == 0 {
		t.Errorf("rescue boot %+v: want type rescue and an id", b)
	}
	_, err = provider.FindBoot(boots, "no-such-kernel")
	wantErrIs(t, "FindBoot(no-such-kernel)", err, provider.ErrNotFound, "hd", s.h.RescueKernel)
}

func (s suite) taskUnknown(t *testing.T) {
	w := s.h.New(t)
	ref := provider.TaskRef{Scope: provider.ScopeServer, Owner: string(s.h.Primary), ID: 987654321}
	_, err := w.Provider.Task(t.Context(), ref)
	wantErrIs(t, "Task", err, provider.ErrNotFound, "987654321", string(s.h.Primary))

	opts := s.h.Wait
	opts.Initial, opts.Transient404 = -1, max(opts.Min, 1)
	_, err = provider.WaitTask(t.Context(), w.Provider, ref, opts)
	wantErrIs(t, "WaitTask", err, provider.ErrNotFound, "987654321", string(s.h.Primary))

	refs, err := w.Provider.Tasks(t.Context(), provider.ScopeServer, string(s.h.Primary), "hardReboot")
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if slices.Contains(refs, ref) {
		t.Errorf("Tasks lists the unknown task %v", ref)
	}
}

func (s suite) routes(t *testing.T) {
	if !s.h.IP.IsValid() {
		t.Skip("no failover IP in this world")
	}
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	got, err := p.RouteOf(ctx, s.h.IP)
	if err != nil || got != s.h.Primary {
		t.Fatalf("RouteOf(%s) = %q, %v; want %q", s.h.IP, got, err, s.h.Primary)
	}
	ips, err := p.ServerIPs(ctx, s.h.Primary)
	if err != nil {
		t.Fatalf("ServerIPs(%s): %v", s.h.Primary, err)
	}
	if !slices.Contains(ips, s.h.IP) {
		t.Errorf("ServerIPs(%s) = %v, want it to hold %s", s.h.Primary, ips, s.h.IP)
	}
	if s.h.Spare != "" {
		if err := p.CanMoveIP(ctx, s.h.IP, s.h.Spare); err != nil {
			t.Errorf("CanMoveIP(%s, %s): %v", s.h.IP, s.h.Spare, err)
		}
	}
	if err := p.CanMoveIP(ctx, s.h.IP, s.h.Unknown); err == nil {
		t.Errorf("CanMoveIP(%s, %s) = nil, want an error", s.h.IP, s.h.Unknown)
	}
}

func (s suite) rescueBoot(t *testing.T, p provider.Provider) provider.Boot {
	t.Helper()
	boots, err := p.Boots(t.Context(), s.h.Primary)
	if err != nil {
		t.Fatalf("Boots: %v", err)
	}
	b, err := provider.FindBoot(boots, s.h.RescueKernel)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s suite) updateServer(t *testing.T) {
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	rescue := s.rescueBoot(t, p)
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	monitoring := false
	u := provider.ServerUpdate{BootID: &rescue.ID, RescueSSHKey: &key, Monitoring: &monitoring}
	for i := range 2 {
		if err := p.UpdateServer(ctx, s.h.Primary, u); err != nil {
			t.Fatalf("UpdateServer #%d: %v", i+1, err)
		}
	}
	if err := p.UpdateServer(ctx, s.h.Primary, provider.ServerUpdate{}); err != nil {
		t.Errorf("empty UpdateServer: %v", err)
	}
	got, err := p.Server(ctx, s.h.Primary)
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	if got.BootID != rescue.ID || got.RescueSSHKey != key || got.Monitoring {
		t.Errorf("after update: bootId %d, key %q, monitoring %v; want %d, %q, false", got.BootID, got.RescueSSHKey, got.Monitoring, rescue.ID, key)
	}
}

func (s suite) reboot(t *testing.T) {
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	rescue := s.rescueBoot(t, p)
	if err := p.UpdateServer(ctx, s.h.Primary, provider.ServerUpdate{BootID: &rescue.ID}); err != nil {
		t.Fatalf("UpdateServer: %v", err)
	}
	ref, err := p.Reboot(ctx, s.h.Primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	if ref.Scope != provider.ScopeServer || ref.Owner != string(s.h.Primary) || ref.ID == 0 {
		t.Errorf("Reboot returned %+v, want a server task of %s", ref, s.h.Primary)
	}
	refs, err := p.Tasks(ctx, provider.ScopeServer, string(s.h.Primary), "hardReboot")
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if !slices.Contains(refs, ref) {
		t.Errorf("Tasks(hardReboot) = %v, want it to list %v", refs, ref)
	}
	task, err := provider.WaitTask(ctx, p, ref, s.h.Wait)
	if err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if task.Status != provider.TaskDone || task.Function != "hardReboot" {
		t.Errorf("task %+v, want a done hardReboot", task)
	}
	if w.Booted != nil {
		if b, ok := w.Booted(s.h.Primary); !ok || b.ID != rescue.ID {
			t.Errorf("server came up in %+v (known %v), want %+v", b, ok, rescue)
		}
	}
	if w.Reboots != nil {
		if n := w.Reboots(s.h.Primary); n != 1 {
			t.Errorf("reboots = %d, want 1", n)
		}
	}
	again, err := p.Task(ctx, ref)
	if err != nil || again.Status != provider.TaskDone {
		t.Errorf("Task after done = %+v, %v", again, err)
	}
}

func (s suite) rebootBusy(t *testing.T) {
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	ref, err := p.Reboot(ctx, s.h.Primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	_, err = p.Reboot(ctx, s.h.Primary)
	wantErrIs(t, "second Reboot while the first is pending", err, provider.ErrBusy, string(s.h.Primary))
	if _, err := provider.WaitTask(ctx, p, ref, s.h.Wait); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if w.Reboots != nil {
		if n := w.Reboots(s.h.Primary); n != 1 {
			t.Errorf("reboots = %d, want 1", n)
		}
	}
}

func (s suite) moveIP(t *testing.T) {
	if !s.h.IP.IsValid() || s.h.Spare == "" {
		t.Skip("needs a failover IP and a spare")
	}
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	ref, err := p.MoveIP(ctx, s.h.IP, s.h.Spare)
	if err != nil {
		t.Fatalf("MoveIP: %v", err)
	}
	if ref.Scope != provider.ScopeIP || ref.Owner != s.h.IP.String() || ref.ID == 0 {
		t.Errorf("MoveIP returned %+v, want an IP task of %s", ref, s.h.IP)
	}
	task, err := provider.WaitTask(ctx, p, ref, s.h.Wait)
	if err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if task.Status != provider.TaskDone {
		t.Errorf("task %+v, want done", task)
	}
	if got, err := p.RouteOf(ctx, s.h.IP); err != nil || got != s.h.Spare {
		t.Errorf("RouteOf after move = %q, %v; want %q", got, err, s.h.Spare)
	}
	if ips, err := p.ServerIPs(ctx, s.h.Spare); err != nil || !slices.Contains(ips, s.h.IP) {
		t.Errorf("ServerIPs(%s) after move = %v, %v; want it to hold %s", s.h.Spare, ips, err, s.h.IP)
	}
	if ips, err := p.ServerIPs(ctx, s.h.Primary); err != nil || slices.Contains(ips, s.h.IP) {
		t.Errorf("ServerIPs(%s) after move = %v, %v; want it without %s", s.h.Primary, ips, err, s.h.IP)
	}
	// Repeating the call is a no-op.
	again, err := p.MoveIP(ctx, s.h.IP, s.h.Spare)
	if err != nil || again != (provider.TaskRef{}) {
		t.Errorf("repeated MoveIP = %+v, %v; want zero ref and nil", again, err)
	}
	if w.Moves != nil {
		if n := w.Moves(s.h.IP); n != 1 {
			t.Errorf("moves = %d, want 1", n)
		}
	}
}

func (s suite) moveNoop(t *testing.T) {
	if !s.h.IP.IsValid() {
		t.Skip("needs a failover IP")
	}
	w := s.h.New(t)
	ref, err := w.Provider.MoveIP(t.Context(), s.h.IP, s.h.Primary)
	if err != nil || ref != (provider.TaskRef{}) {
		t.Errorf("MoveIP to the current route = %+v, %v; want zero ref and nil", ref, err)
	}
	if w.Moves != nil {
		if n := w.Moves(s.h.IP); n != 0 {
			t.Errorf("moves = %d, want 0", n)
		}
	}
}

func (s suite) moveUnknown(t *testing.T) {
	if !s.h.IP.IsValid() {
		t.Skip("needs a failover IP")
	}
	w := s.h.New(t)
	p, ctx := w.Provider, t.Context()
	_, err := p.MoveIP(ctx, s.h.IP, s.h.Unknown)
	if !errors.Is(err, provider.ErrNotFound) && !errors.Is(err, provider.ErrPermanent) {
		t.Errorf("MoveIP to %s: error = %v, want ErrNotFound or ErrPermanent", s.h.Unknown, err)
	} else if !strings.Contains(err.Error(), s.h.IP.String()) {
		t.Errorf("MoveIP error %q does not name %s", err, s.h.IP)
	}
	if got, err := p.RouteOf(ctx, s.h.IP); err != nil || got != s.h.Primary {
		t.Errorf("RouteOf after refused move = %q, %v; want %q", got, err, s.h.Primary)
	}
}
