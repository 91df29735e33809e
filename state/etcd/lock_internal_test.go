package etcd

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/etcd/etcdtest"
)

// timeMirror has the layout of time.Time (wall, ext, loc), so a test can
// build a reading that the time package's API cannot: a wall clock that
// moved while the monotonic clock did not, as across a suspend.
type timeMirror struct {
	wall uint64
	ext  int64
	loc  *time.Location
}

// suspended returns deadline as a lease sees it after the machine slept for
// d (whole seconds): the monotonic reading is unchanged, the wall reading
// is d earlier relative to the wall clock, which kept running.
func suspended(t *testing.T, deadline time.Time, d time.Duration) time.Time {
	t.Helper()
	const hasMonotonic = 1 << 63
	m := (*timeMirror)(unsafe.Pointer(&deadline))
	if m.wall&hasMonotonic == 0 {
		t.Fatalf("deadline %v has no monotonic reading", deadline)
	}
	want := deadline.Round(0).Add(-d)
	m.wall -= uint64(d/time.Second) << 30 // seconds field of wall, above 30 bits of nanoseconds
	if !deadline.Round(0).Equal(want) || time.Until(deadline) < 30*time.Second {
		t.Fatalf("cannot fake a suspend: time.Time layout changed (got %v, want wall %v)", deadline, want)
	}
	return deadline
}

func openInternal(t *testing.T, srv *etcdtest.Server, prefix string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{Endpoints: srv.Endpoints, Prefix: prefix, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLeaseInternal(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Run("SuspendRefresh", func(t *testing.T) { testSuspendRefresh(t, openInternal(t, srv, "/suspend-refresh")) })
	t.Run("SuspendMonitor", func(t *testing.T) { testSuspendMonitor(t, openInternal(t, srv, "/suspend-monitor")) })
	t.Run("RefreshReleaseRace", func(t *testing.T) { testRefreshReleaseRace(t, openInternal(t, srv, "/race")) })
}

// simulateSuspend moves the lease's deadline as a suspend of an hour
// would, and does not wake the monitor (a real suspend does not either).
func simulateSuspend(t *testing.T, l *lease) {
	d := suspended(t, l.getDeadline(), time.Hour)
	l.mu.Lock()
	l.deadline = d
	l.mu.Unlock()
}

// testSuspendRefresh: after a suspend longer than the ttl, Refresh reports
// the lease lost instead of renewing it (etcd's clock ran on; another
// process may hold the lock by now).
func testSuspendRefresh(t *testing.T, s *Store) {
	sl, err := s.Lock(t.Context(), state.LockInfo{Name: "suspend", Run: "r1"}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Release(t.Context())
	l := sl.(*lease)
	simulateSuspend(t, l)
	if err := l.Refresh(t.Context()); !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("Refresh after a suspend past the deadline: %v, want ErrLeaseLost", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Error("Lost() not closed after Refresh found the lease expired")
	}
}

// testSuspendMonitor: without any Refresh, Lost closes soon after waking
// from a suspend that outlasted the lease.
func testSuspendMonitor(t *testing.T, s *Store) {
	sl, err := s.Lock(t.Context(), state.LockInfo{Name: "suspend", Run: "r1"}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Release(t.Context())
	l := sl.(*lease)
	simulateSuspend(t, l)
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost() still open 10s after waking from a suspend past the lease's deadline")
	}
}

// testRefreshReleaseRace: Refresh rewriting the holder while Release (and
// markLost) log its name; under -race this found unguarded reads of info.
func testRefreshReleaseRace(t *testing.T, s *Store) {
	for range 20 {
		sl, err := s.Lock(t.Context(), state.LockInfo{Name: "race", Run: "r1"}, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var refreshes atomic.Int64
		done := make(chan error, 1)
		go func() {
			for {
				if err := sl.Refresh(t.Context()); err != nil {
					if errors.Is(err, state.ErrLeaseLost) {
						err = nil
					}
					done <- err
					return
				}
				refreshes.Add(1)
			}
		}()
		for refreshes.Load() < 2 {
			time.Sleep(time.Millisecond)
		}
		if err := sl.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	}
}
