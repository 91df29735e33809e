package local_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
)

// deadPID returns the PID of a process that has exited and been reaped: a
// re-run of this test binary that runs no tests.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run child %s: %v", os.Args[0], err)
	}
	return cmd.Process.Pid
}

func TestStaleByPID(t *testing.T) {
	const here = "orchestrator-1"
	dead := deadPID(t)
	tests := []struct {
		name    string
		host    string
		pid     int
		takeOut bool
	}{
		{"dead pid on this host", here, dead, true},
		{"live pid on this host", here, os.Getpid(), false},
		{"dead pid on another host", "orchestrator-2", dead, false},
		{"unknown pid on this host", here, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			a := open(t, dir, local.WithHostname(here))
			b := open(t, dir, local.WithHostname(here))
			old, err := a.Lock(t.Context(), state.LockInfo{Name: "server/ns1", Who: "alice", Host: tc.host, PID: tc.pid, Run: "r1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			l, err := b.Lock(t.Context(), state.LockInfo{Name: "server/ns1", Who: "bob", Host: here, PID: os.Getpid()}, time.Hour)
			if !tc.takeOut {
				if h, ok := state.IsLocked(err); !ok || h.ID != old.Info().ID {
					t.Fatalf("lock held by pid %d on %s: got %v, want LockedError naming %s", tc.pid, tc.host, err, old.Info().ID)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock held by dead pid %d: got %v, want takeover", tc.pid, err)
			}
			defer l.Release(t.Context())
			if err := old.Refresh(t.Context()); !errors.Is(err, state.ErrLeaseLost) {
				t.Errorf("refresh of the taken-over lease: got %v, want ErrLeaseLost", err)
			}
			select {
			case <-old.Lost():
			default:
				t.Error("Lost() not closed after Refresh found the loss")
			}
		})
	}
}

// clock is a settable clock for WithClock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestExpiryWithClock(t *testing.T) {
	dir := newDir(t)
	c := &clock{now: t0}
	alive := local.WithPIDAlive(func(int) bool { return true })
	a := open(t, dir, local.WithClock(c.Now), alive)
	b := open(t, dir, local.WithClock(c.Now), alive)
	info := state.LockInfo{Name: "ip/192.0.2.1/32", Who: "alice", Host: "h", PID: 1}

	l, err := a.Lock(t.Context(), info, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Info().Expires, t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("Expires %s, want %s", got, want)
	}
	c.Advance(50 * time.Second)
	if err := l.Refresh(t.Context()); err != nil {
		t.Fatalf("refresh before expiry: %v", err)
	}
	if got, want := l.Info().Expires, t0.Add(110*time.Second); !got.Equal(want) {
		t.Errorf("Expires after refresh %s, want %s", got, want)
	}
	c.Advance(50 * time.Second) // past the first expiry, within the refreshed one
	if _, err := b.Lock(t.Context(), info, time.Minute); err == nil {
		t.Fatal("refreshed lock taken over before its new expiry")
	}
	locks, err := b.Locks(t.Context())
	if err != nil || len(locks) != 1 {
		t.Fatalf("locks = %v, %v; want one", locks, err)
	}

	// A lease that expired is lost even if nobody took it over, and its
	// file goes away.
	c.Advance(time.Minute)
	if locks, err := b.Locks(t.Context()); err != nil || len(locks) != 0 {
		t.Errorf("locks after expiry = %v, %v; want none", locks, err)
	}
	if err := l.Refresh(t.Context()); !errors.Is(err, state.ErrLeaseLost) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("refresh after expiry: got %v, want ErrLeaseLost saying it expired", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "locks")); len(entries) != 0 {
		t.Errorf("lock files left after expiry: %v", entries)
	}
	if _, err := b.Lock(t.Context(), info, time.Minute); err != nil {
		t.Errorf("lock after expiry: %v", err)
	}
}

func TestLockNamesAreEscaped(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	names := []string{"a/b", "a%2Fb", "a_b", "..", ".", "../../etc/passwd", "ip/2001:db8::1/128",
		strings.Repeat("n", 300) + "1", strings.Repeat("n", 300) + "2"}
	var leases []state.Lease
	for _, n := range names {
		l, err := s.Lock(t.Context(), state.LockInfo{Name: n, Who: "me"}, time.Minute)
		if err != nil {
			t.Fatalf("lock %q: %v", n, err)
		}
		leases = append(leases, l)
	}
	locks, err := s.Locks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range locks {
		got = append(got, l.Name)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lock names (-want +got):\n%s", diff)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "locks"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		t.Errorf("%d lock files for %d names", len(entries), len(names))
	}
	for _, e := range entries {
		if len(e.Name()) > 255 || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("bad lock file name %q", e.Name())
		}
	}
	for _, l := range leases {
		if err := l.Release(t.Context()); err != nil {
			t.Error(err)
		}
	}
	if _, err := s.Lock(t.Context(), state.LockInfo{Who: "me"}, time.Minute); err == nil {
		t.Error("lock with an empty name succeeded")
	}
	if _, err := s.Lock(t.Context(), state.LockInfo{Name: "x", Who: "me"}, 0); err == nil {
		t.Error("lock with a zero ttl succeeded")
	}
}

func TestCorruptLockFile(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	path := filepath.Join(dir, "locks", "server%2Fns1.lock")
	if err := os.WriteFile(path, []byte("{\"id\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Lock(t.Context(), state.LockInfo{Name: "server/ns1", Who: "me"}, time.Minute)
	if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("lock over a corrupt lock file: got %v, want ErrCorrupt naming %s", err, path)
	}
	if _, err := s.Locks(t.Context()); !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("locks with a corrupt lock file: got %v, want ErrCorrupt", err)
	}
	// Removing the file, as the error says, fixes it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(t.Context(), state.LockInfo{Name: "server/ns1", Who: "me"}, time.Minute); err != nil {
		t.Errorf("lock after removing the corrupt file: %v", err)
	}
}

// TestLockIDsUnique takes and releases many locks across two stores: no
// two acquisitions share an ID.
func TestLockIDsUnique(t *testing.T) {
	dir := newDir(t)
	stores := []*local.Store{open(t, dir), open(t, dir)}
	seen := make(map[string]bool)
	for i := range 200 {
		l, err := stores[i%2].Lock(t.Context(), state.LockInfo{Name: "same", Who: "me"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		id := l.Info().ID
		if seen[id] || len(id) != 32 {
			t.Fatalf("acquisition %d: id %q (seen before: %v), want 32 hex digits never seen", i, id, seen[id])
		}
		seen[id] = true
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
