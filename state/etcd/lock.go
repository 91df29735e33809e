package etcd

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/takeover-dev/takeover/state"
)

func (s *Store) lockPrefix() string         { return s.prefix + "/locks/" }
func (s *Store) lockKey(name string) string { return s.lockPrefix() + name }

// leaseTTL turns a lock ttl into etcd's whole seconds, rounding up, at least 1.
// The server may raise it further to its minimum lease TTL.
func leaseTTL(ttl time.Duration) int64 {
	return max(1, int64(math.Ceil(ttl.Seconds())))
}

// Lock puts info at <prefix>/locks/<name>, attached to a new etcd lease of
// ttl, in a transaction that succeeds only if the key does not exist. An
// expired holder's key is already gone (etcd deletes it with its lease). A
// holder on this host whose process is gone is removed first.
func (s *Store) Lock(ctx context.Context, info state.LockInfo, ttl time.Duration) (state.Lease, error) {
	if info.Name == "" || strings.Contains(info.Name, "\x00") {
		return nil, fmt.Errorf("lock %q: invalid lock name", info.Name)
	}
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	key := s.lockKey(info.Name)
	for attempt := 0; attempt < 3; attempt++ {
		start := time.Now()
		g, err := s.cli.Grant(ctx, leaseTTL(ttl))
		if err != nil {
			return nil, fmt.Errorf("lock %s: grant lease: %w", info.Name, err)
		}
		granted := time.Duration(g.TTL) * time.Second
		info.ID = rand.Text()
		info.Created = start.Round(0)
		info.Expires = info.Created.Add(granted)
		val, err := json.Marshal(info)
		if err != nil {
			s.revoke(g.ID)
			return nil, fmt.Errorf("lock %s: encode holder: %w", info.Name, err)
		}
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			s.revoke(g.ID)
			return nil, fmt.Errorf("lock %s: %w", info.Name, err)
		}
		if resp.Succeeded {
			l := s.newLease(key, g.ID, granted, info, resp.Header.Revision, start.Add(granted))
			s.log.Debug().Str("lock", info.Name).Str("id", info.ID).Dur("ttl", granted).Msg("lock acquired")
			return l, nil
		}
		s.revoke(g.ID)
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			continue // cannot happen within one txn; retry to be safe
		}
		var holder state.LockInfo
		if err := json.Unmarshal(kvs[0].Value, &holder); err != nil {
			return nil, fmt.Errorf("lock %s: holder at key %s: %w: %w", info.Name, kvs[0].Key, state.ErrCorrupt, err)
		}
		if attempt == 0 && s.staleLocal(holder) {
			if _, err := s.removeHolder(ctx, key, kvs[0].Lease); err != nil {
				return nil, fmt.Errorf("lock %s: remove stale holder (pid %d gone): %w", info.Name, holder.PID, err)
			}
			s.log.Info().Str("lock", info.Name).Str("stale_id", holder.ID).Int("pid", holder.PID).Msg("removed lock of a dead local process")
			continue
		}
		return nil, &state.LockedError{Holder: holder}
	}
	return nil, fmt.Errorf("lock %s: the holder changed during every attempt", info.Name)
}

// staleLocal reports whether h was taken on this host by a process that no
// longer exists.
func (s *Store) staleLocal(h state.LockInfo) bool {
	if s.host == "" || h.Host != s.host || h.PID <= 0 {
		return false
	}
	err := syscall.Kill(h.PID, 0)
	return errors.Is(err, syscall.ESRCH)
}

// removeHolder deletes key if it is still attached to lease, and revokes
// the lease. It reports whether the key was deleted.
func (s *Store) removeHolder(ctx context.Context, key string, lease int64) (bool, error) {
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, err
	}
	if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return resp.Succeeded, err
	}
	return resp.Succeeded, nil
}

// revoke gives a lease back without waiting for the caller's ctx; failures
// only mean the lease lives until its TTL.
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.cli.Revoke(ctx, id)
}

// Locks lists the holders stored under <prefix>/locks/, ordered by name.
func (s *Store) Locks(ctx context.Context) ([]state.LockInfo, error) {
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	var out []state.LockInfo
	err := s.scan(ctx, s.lockPrefix(), false, func(kv *mvccpb.KeyValue) error {
		var h state.LockInfo
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return fmt.Errorf("key %s: %w: %w", kv.Key, state.ErrCorrupt, err)
		}
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return out, nil
}

// Unlock deletes the lock whose holder has the given ID and revokes its
// lease, so the holder's Lost channel closes and its Refresh fails.
func (s *Store) Unlock(ctx context.Context, id string) error {
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	var hit *mvccpb.KeyValue
	err := s.scan(ctx, s.lockPrefix(), false, func(kv *mvccpb.KeyValue) error {
		var h state.LockInfo
		if hit == nil && json.Unmarshal(kv.Value, &h) == nil && h.ID == id {
			hit = kv
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	if hit == nil {
		return fmt.Errorf("unlock %s: %w", id, state.ErrNotFound)
	}
	deleted, err := s.removeHolder(ctx, string(hit.Key), hit.Lease)
	if err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	if !deleted {
		// Expired or released since the scan.
		return fmt.Errorf("unlock %s: %w", id, state.ErrNotFound)
	}
	s.log.Info().Str("lock", strings.TrimPrefix(string(hit.Key), s.lockPrefix())).Str("id", id).Msg("lock removed by unlock")
	return nil
}

// wallCheck bounds how long the monitor sleeps between looks at the
// deadline: Go timers run on the monotonic clock, which stands still while
// the machine is suspended, so only a look at the wall clock notices that a
// suspend outlasted the lease.
const wallCheck = time.Second

// remaining is how long until deadline, by whichever of the monotonic and
// the wall clock says less. The monotonic clock is immune to clock steps
// but does not advance during a suspend; the wall clock does (etcd's own
// clock kept running, so the lease expired there), so a process waking from
// a suspend longer than its ttl sees its lease as lost.
func remaining(deadline time.Time) time.Duration {
	mono := time.Until(deadline)
	wall := deadline.Round(0).Sub(time.Now().Round(0))
	return min(mono, wall)
}

// lease is a held lock: a key attached to an etcd lease.
type lease struct {
	s        *Store
	key      string
	id       clientv3.LeaseID
	ttl      time.Duration // as granted by the server
	name     string        // lock name, immutable (info is rewritten by Refresh)
	holderID string        // holder ID, immutable

	refreshMu sync.Mutex // one Refresh at a time

	mu       sync.Mutex
	info     state.LockInfo
	rev      int64     // mod revision of our value of key
	deadline time.Time // by then the server has surely expired the lease unless refreshed
	released bool

	lostOnce sync.Once
	lost     chan struct{}
	poke     chan struct{} // tells the monitor the deadline moved
	stop     context.CancelFunc
}

func (s *Store) newLease(key string, id clientv3.LeaseID, ttl time.Duration, info state.LockInfo, rev int64, deadline time.Time) *lease {
	ctx, stop := context.WithCancel(context.Background())
	l := &lease{
		s: s, key: key, id: id, ttl: ttl, name: info.Name, holderID: info.ID,
		info: info, rev: rev, deadline: deadline,
		lost: make(chan struct{}),
		poke: make(chan struct{}, 1),
		stop: stop,
	}
	wch := s.cli.Watch(ctx, key, clientv3.WithRev(rev+1))
	go l.monitor(ctx, wch)
	return l
}

// monitor closes Lost when the local deadline passes without a Refresh (etcd
// may be unreachable: the lease is then expired or about to be), or when the
// key is deleted or overwritten by anyone else (expiry seen by the server,
// Unlock, a takeover).
func (l *lease) monitor(ctx context.Context, wch clientv3.WatchChan) {
	defer l.stop() // ends the watch once the lease is lost
	timer := time.NewTimer(min(remaining(l.getDeadline()), wallCheck))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.poke:
			timer.Reset(min(remaining(l.getDeadline()), wallCheck))
		case <-timer.C:
			if d := remaining(l.getDeadline()); d > 0 {
				timer.Reset(min(d, wallCheck))
				continue
			}
			l.markLost("expired: not refreshed within its ttl")
			return
		case wr, ok := <-wch:
			if !ok {
				wch = nil // closed with the client; the timer still runs
				continue
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE:
					l.markLost("lock key deleted (expired or unlocked)")
					return
				case ev.Kv.Lease != int64(l.id):
					l.markLost("lock key taken by another lease")
					return
				}
			}
		}
	}
}

func (l *lease) getDeadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// markLost closes Lost once, unless the lease was released on purpose.
func (l *lease) markLost(why string) {
	l.mu.Lock()
	released := l.released
	l.mu.Unlock()
	if released {
		return
	}
	l.lostOnce.Do(func() {
		close(l.lost)
		l.s.log.Warn().Str("lock", l.name).Str("id", l.holderID).Str("reason", why).Msg("lease lost")
	})
}

func (l *lease) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// Info returns the holder info as stored; Refresh updates its Expires.
func (l *lease) Info() state.LockInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// Lost is closed when the lease is known to be gone. Release does not close it.
func (l *lease) Lost() <-chan struct{} { return l.lost }

// Refresh renews the etcd lease (KeepAliveOnce) and rewrites the holder with
// the new Expires, if the key is still ours.
func (l *lease) Refresh(ctx context.Context) error {
	l.refreshMu.Lock()
	defer l.refreshMu.Unlock()
	name := l.name
	l.mu.Lock()
	released, deadline := l.released, l.deadline
	l.mu.Unlock()
	if released {
		return fmt.Errorf("refresh lock %s: released: %w", name, state.ErrLeaseLost)
	}
	if l.isLost() {
		return fmt.Errorf("refresh lock %s: %w", name, state.ErrLeaseLost)
	}
	if remaining(deadline) <= 0 {
		// Typically after a suspend: etcd has expired the lease, or is
		// about to, and another process may already hold the lock.
		l.markLost("expired: not refreshed within its ttl (wall clock)")
		return fmt.Errorf("refresh lock %s: expired at %s: %w", name, deadline.Round(0).Format(time.RFC3339), state.ErrLeaseLost)
	}

	start := time.Now()
	// Past the deadline the lease is gone by the server's clock, so trying
	// longer is pointless.
	kctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	kctx, cancel2 := l.s.opctx(kctx)
	defer cancel2()
	ka, err := l.s.cli.KeepAliveOnce(kctx, l.id)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) || remaining(deadline) <= 0 {
			l.markLost("refresh failed: " + err.Error())
			return fmt.Errorf("refresh lock %s: %w: %w", name, state.ErrLeaseLost, err)
		}
		return fmt.Errorf("refresh lock %s: %w", name, err)
	}
	granted := time.Duration(ka.TTL) * time.Second
	l.mu.Lock()
	l.deadline = start.Add(granted)
	info, rev := l.info, l.rev
	l.mu.Unlock()
	select {
	case l.poke <- struct{}{}:
	default:
	}

	info.Expires = start.Round(0).Add(granted)
	val, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("refresh lock %s: encode holder: %w", name, err)
	}
	tctx, cancel3 := l.s.opctx(ctx)
	defer cancel3()
	resp, err := l.s.cli.Txn(tctx).
		If(clientv3.Compare(clientv3.ModRevision(l.key), "=", rev)).
		Then(clientv3.OpPut(l.key, string(val), clientv3.WithLease(l.id))).
		Commit()
	if err != nil {
		// The lease itself was renewed; only the displayed expiry is stale.
		// A txn that timed out may still have committed: the key then holds
		// the new expiry at a revision we did not learn, and the next
		// Refresh's compare fails and reports the lease lost although it is
		// ours. That errs on the safe side (the run stops), so it is left so.
		return fmt.Errorf("refresh lock %s: update holder: %w", name, err)
	}
	if !resp.Succeeded {
		l.markLost("lock key changed by someone else")
		return fmt.Errorf("refresh lock %s: key changed by someone else: %w", name, state.ErrLeaseLost)
	}
	l.mu.Lock()
	l.info, l.rev = info, resp.Header.Revision
	l.mu.Unlock()
	if l.isLost() {
		return fmt.Errorf("refresh lock %s: %w", name, state.ErrLeaseLost)
	}
	return nil
}

// Release revokes the lease, which deletes the key if it is still ours.
// A lease already gone (expired, unlocked) counts as released.
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.mu.Unlock()
	ctx, cancel := l.s.opctx(ctx)
	defer cancel()
	if _, err := l.s.cli.Revoke(ctx, l.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.mu.Lock()
		l.released = false
		l.mu.Unlock()
		return fmt.Errorf("release lock %s: %w", l.name, err)
	}
	l.stop()
	l.s.log.Debug().Str("lock", l.name).Str("id", l.holderID).Msg("lock released")
	return nil
}
