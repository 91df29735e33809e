package etcd_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/etcd"
	"github.com/takeover-dev/takeover/state/etcd/etcdtest"
)

func holder(t *testing.T, name string) state.LockInfo {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return state.LockInfo{Name: name, Run: "r1", Who: "tester", Host: host, PID: os.Getpid(), Op: "test"}
}

func rec(run string, seq int64) state.Record {
	return state.Record{Run: run, Seq: seq, Step: "s", Phase: state.PhaseNote, At: time.Now()}
}

// waitLock polls Lock until the lock is free; refusals other than
// *LockedError fail the test.
func waitLock(t *testing.T, s state.Store, info state.LockInfo, ttl time.Duration) state.Lease {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := s.Lock(t.Context(), info, ttl)
		if err == nil {
			return l
		}
		if _, ok := state.IsLocked(err); !ok || time.Now().After(deadline) {
			t.Fatalf("lock %s: %v", info.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEtcdDownLosesLease is the acceptance scenario: etcd stops while a run
// holds its lock, the lease is reported lost within about its TTL, journal
// writes fail instead of hanging, and once etcd is back the same Store
// appends again and the lock can be taken anew after the old lease expires.
func TestEtcdDownLosesLease(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := etcd.Open(t.Context(), etcd.Config{Endpoints: srv.Endpoints, Prefix: "/down", RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other := open(t, srv, "/down")

	if err := s.Append(t.Context(), rec("run1", 0)); err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	l, err := s.Lock(t.Context(), holder(t, "server/ns1"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Refresh(t.Context()); err != nil {
		t.Fatalf("refresh while etcd is up: %v", err)
	}
	refreshed := time.Now()

	srv.Stop()
	t.Logf("etcd stopped %s after the last refresh", time.Since(refreshed).Round(time.Millisecond))
	select {
	case <-l.Lost():
		t.Logf("lease lost %s after the last refresh (ttl %s)", time.Since(refreshed).Round(time.Millisecond), ttl)
	case <-time.After(30 * time.Second):
		t.Fatal("Lost() not closed 30s after etcd stopped")
	}
	if err := l.Refresh(t.Context()); !errors.Is(err, state.ErrLeaseLost) {
		t.Errorf("refresh after loss: got %v, want ErrLeaseLost", err)
	}
	start := time.Now()
	if err := s.Append(t.Context(), rec("run1", 1)); err == nil || errors.Is(err, state.ErrConflict) {
		t.Errorf("append with etcd down: got %v, want a transport error", err)
	} else {
		t.Logf("append with etcd down failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}

	srv.Restart()
	// The client reconnects by itself; allow it a moment through ctx-bounded
	// retries of the first call.
	var appendErr error
	for range 20 {
		if appendErr = s.Append(t.Context(), rec("run1", 1)); appendErr == nil {
			break
		}
		if errors.Is(appendErr, state.ErrConflict) {
			t.Fatalf("append after restart: %v (the failed append must not have landed)", appendErr)
		}
	}
	if appendErr != nil {
		t.Fatalf("append after restart: %v", appendErr)
	}
	recs, err := other.Records(t.Context(), "run1")
	if err != nil {
		t.Fatalf("records after restart: %v", err)
	}
	if len(recs) != 2 {
		t.Errorf("after restart run1 has %d records, want 2", len(recs))
	}

	// The old lease is still alive in etcd for up to its TTL after the
	// restart (etcd renews leases when a leader is elected); then the lock
	// is free again.
	l2 := waitLock(t, other, holder(t, "server/ns1"), time.Minute)
	if l2.Info().ID == l.Info().ID {
		t.Error("new lock reuses the lost lease's ID")
	}
	if err := l.Release(t.Context()); err != nil {
		t.Errorf("release of the lost lease: %v", err)
	}
	if _, err := s.Lock(t.Context(), holder(t, "server/ns1"), time.Minute); err == nil {
		t.Error("releasing the lost lease freed the new holder's lock")
	}
	if err := l2.Release(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestJournalSurvivesRestart checks that appended records are durable
// across an etcd crash.
func TestJournalSurvivesRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, "/crash")
	want := []state.Record{rec("r", 0), rec("r", 1), rec("r", 2)}
	for _, r := range want {
		if err := s.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	srv.Kill()
	srv.Restart()
	got, err := open(t, srv, "/crash").Records(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("records after kill and restart (-want +got):\n%s", diff)
	}
}

// TestPrefixesAreSeparate checks that two prefixes on one etcd do not see
// each other's runs or locks.
func testPrefixesAreSeparate(t *testing.T, srv *etcdtest.Server) {
	a, b := open(t, srv, "/team-a"), open(t, srv, "/team-a2")
	if err := a.Append(t.Context(), rec("r", 0)); err != nil {
		t.Fatal(err)
	}
	l, err := a.Lock(t.Context(), holder(t, "x"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(t.Context())
	if runs, err := b.Runs(t.Context()); err != nil || len(runs) != 0 {
		t.Errorf("runs under another prefix: %v, %v", runs, err)
	}
	if locks, err := b.Locks(t.Context()); err != nil || len(locks) != 0 {
		t.Errorf("locks under another prefix: %v, %v", locks, err)
	}
	lb, err := b.Lock(t.Context(), holder(t, "x"), time.Minute)
	if err != nil {
		t.Errorf("same lock name under another prefix: %v", err)
	} else {
		lb.Release(t.Context())
	}
}

// TestCorruptRecord writes garbage where a record belongs: Records names
// the key.
func testCorruptRecord(t *testing.T, srv *etcdtest.Server) {
	s := open(t, srv, "/corrupt")
	for i := range int64(3) {
		if err := s.Append(t.Context(), rec("r", i)); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	tests := []struct {
		name, key, val, wantErr string
	}{
		{"not json", "/corrupt/runs/r/journal/000000000001", "{torn", "/corrupt/runs/r/journal/000000000001: decode"},
		{"wrong seq", "/corrupt/runs/r/journal/000000000001", `{"run":"r","seq":7,"phase":"note","at":"2026-01-01T00:00:00Z"}`, "holds record 7"},
		{"gap", "/corrupt/runs/r/journal/000000000009", `{"run":"r","seq":9,"phase":"note","at":"2026-01-01T00:00:00Z"}`, "key /corrupt/runs/r/journal/000000000009: expected /corrupt/runs/r/journal/000000000003 next"},
	}
	good, err := cli.Get(t.Context(), "/corrupt/runs/r/journal/000000000001")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cli.Put(t.Context(), tc.key, tc.val); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx := context.Background()
				cli.Delete(ctx, "/corrupt/runs/r/journal/000000000009")
				cli.Put(ctx, "/corrupt/runs/r/journal/000000000001", string(good.Kvs[0].Value))
			})
			_, err := s.Records(t.Context(), "r")
			if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("records: got %v, want ErrCorrupt containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := s.Records(t.Context(), "r"); err != nil {
		t.Errorf("records after repair: %v", err)
	}
}

// TestStaleLocalHolder checks that a lock left by a dead process on this
// host is taken over at once, without waiting for its lease to expire.
func testStaleLocalHolder(t *testing.T, srv *etcdtest.Server) {
	a, b := open(t, srv, "/stale"), open(t, srv, "/stale")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := holder(t, "server/ns9")
	dead.PID = cmd.Process.Pid
	old, err := a.Lock(t.Context(), dead, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Lock(t.Context(), holder(t, "server/ns9"), time.Minute)
	if err != nil {
		t.Fatalf("lock held by dead pid %d on this host: %v", dead.PID, err)
	}
	defer l.Release(t.Context())
	select {
	case <-old.Lost():
	case <-time.After(30 * time.Second):
		t.Error("the dead holder's lease was not reported lost")
	}

	// A live holder on another host is never second-guessed.
	remote := holder(t, "server/ns10")
	remote.Host, remote.PID = "elsewhere.example", cmd.Process.Pid
	rl, err := a.Lock(t.Context(), remote, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Release(t.Context())
	if _, err := b.Lock(t.Context(), holder(t, "server/ns10"), time.Minute); err == nil {
		t.Error("took a lock held on another host")
	}
}

// TestLockTTLRounding checks the TTL granted for sub-second requests:
// whole seconds, at least the server's minimum.
func testLockTTLRounding(t *testing.T, srv *etcdtest.Server) {
	s := open(t, srv, "/ttl")
	for _, tc := range []struct {
		ttl, want time.Duration
	}{
		{200 * time.Millisecond, time.Second}, // etcdtest's server minimum is 1 s
		{1500 * time.Millisecond, 2 * time.Second},
		{time.Minute, time.Minute},
	} {
		l, err := s.Lock(t.Context(), holder(t, "ttl/"+tc.ttl.String()), tc.ttl)
		if err != nil {
			t.Fatal(err)
		}
		info := l.Info()
		if got := info.Expires.Sub(info.Created); got != tc.want {
			t.Errorf("ttl %s: granted %s, want %s", tc.ttl, got, tc.want)
		}
		l.Release(t.Context())
	}
}

// TestOpenUnreachable checks that Open fails within its dial timeout when
// nothing listens.
func TestOpenUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	ep := srv.Endpoints
	srv.Stop()
	start := time.Now()
	_, err := etcd.Open(t.Context(), etcd.Config{Endpoints: ep, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("open of a stopped etcd succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("open took %s with a 500ms dial timeout", d)
	}
	if !strings.Contains(err.Error(), "etcd://"+ep[0]+"/takeover") {
		t.Errorf("error does not name the store: %v", err)
	}
}

// TestLocksCorruptHolder checks that an undecodable lock value is reported
// as corrupt, naming its key.
func testLocksCorruptHolder(t *testing.T, srv *etcdtest.Server) {
	s := open(t, srv, "/lockcorrupt")
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(t.Context(), "/lockcorrupt/locks/bad", "not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Locks(t.Context()); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "/lockcorrupt/locks/bad") {
		t.Errorf("locks: got %v, want ErrCorrupt naming the key", err)
	}
	_, err = s.Lock(t.Context(), holder(t, "bad"), time.Minute)
	if !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("lock over a corrupt holder: got %v, want ErrCorrupt", err)
	}
}

// TestTLS reaches a TLS etcd that requires client certificates through an
// etcds:// URL, and checks that a client without a certificate is refused.
func TestTLS(t *testing.T) {
	srv := etcdtest.StartTLS(t)
	cfg, err := etcd.ParseURL(srv.URL("/tls"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := etcd.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg, err)
	}
	defer s.Close()
	if err := s.Append(t.Context(), rec("r", 0)); err != nil {
		t.Fatal(err)
	}
	l, err := s.Lock(t.Context(), holder(t, "tls"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}

	noCert := cfg
	noCert.CertFile, noCert.KeyFile, noCert.DialTimeout = "", "", time.Second
	if s, err := etcd.Open(t.Context(), noCert); err == nil {
		s.Close()
		t.Error("open without a client certificate succeeded")
	}
	plain := cfg
	plain.TLS, plain.CAFile, plain.CertFile, plain.KeyFile, plain.DialTimeout = false, "", "", "", time.Second
	if s, err := etcd.Open(t.Context(), plain); err == nil {
		s.Close()
		t.Error("plaintext open of a TLS server succeeded")
	}
}
