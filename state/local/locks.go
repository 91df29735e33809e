package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/takeover-dev/takeover/state"
)

const lockExt = ".lock"

// newID returns 128 random bits in hex: collisions are as likely as
// guessing a random AES key.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes the program rather than return an error
	return hex.EncodeToString(b)
}

// lockFileName escapes a lock name into a file name, injectively: letters,
// digits, '-', '_' and non-leading '.' stay, every other byte becomes %XX.
// Escaped names longer than 180 bytes keep 100 bytes and add '~' and 128
// bits of the name's SHA-256 ('~' never occurs in a short escaped name).
func lockFileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	esc := b.String()
	if len(esc) > 180 {
		sum := sha256.Sum256([]byte(name))
		esc = esc[:100] + "~" + hex.EncodeToString(sum[:16])
	}
	return esc + lockExt
}

func (s *Store) lockPath(name string) string {
	return filepath.Join(s.locksDir(), lockFileName(name))
}

// guard takes a flock on the locks directory, serialising lock operations
// of every process using this store. It is released when the returned file
// is closed.
func (s *Store) guard(how int) (*os.File, error) {
	d, err := os.Open(s.locksDir())
	if err != nil {
		return nil, err
	}
	if err := flock(d, how); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// readLock reads a lock file. A missing file gives an error wrapping
// fs.ErrNotExist, an undecodable one an error wrapping state.ErrCorrupt.
func readLock(path string) (state.LockInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return state.LockInfo{}, err
	}
	var info state.LockInfo
	if err := json.Unmarshal(b, &info); err != nil || info.ID == "" {
		if err == nil {
			err = errors.New("no lock id")
		}
		return state.LockInfo{}, fmt.Errorf("lock file %s: %w: %v; if no takeover holds this lock, remove the file", path, state.ErrCorrupt, err)
	}
	return info, nil
}

// writeLock replaces path with info atomically and durably.
func writeLock(path string, info state.LockInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode lock %s: %w", info.Name, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	return syncDir(dir)
}

func removeLock(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove lock file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// stale says why a lock is no longer live, or "" if it is live.
func (s *Store) stale(info state.LockInfo) string {
	if !s.now().Before(info.Expires) {
		return "expired at " + info.Expires.UTC().Format(time.RFC3339Nano)
	}
	if info.Host == s.host && !s.alive(info.PID) {
		return fmt.Sprintf("process %d on this host is gone", info.PID)
	}
	return ""
}

// Lock implements [state.Store.Lock].
func (s *Store) Lock(ctx context.Context, info state.LockInfo, ttl time.Duration) (state.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", info.Name, err)
	}
	if info.Name == "" {
		return nil, errors.New("lock: empty lock name")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("lock %s: ttl %s is not positive", info.Name, ttl)
	}
	path := s.lockPath(info.Name)
	g, err := s.guard(unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", info.Name, err)
	}
	defer g.Close()

	cur, err := readLock(path)
	switch {
	case err == nil:
		why := s.stale(cur)
		if why == "" {
			return nil, &state.LockedError{Holder: cur}
		}
		s.log.Info().Str("lock", info.Name).Str("stale_id", cur.ID).Str("stale_who", cur.Who).
			Str("stale_run", cur.Run).Str("reason", why).Msg("taking over stale lock")
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("lock %s: %w", info.Name, err)
	}

	now := s.now()
	info.ID = newID()
	info.Created = now.UTC()
	info.Expires = now.Add(ttl).UTC()
	if err := writeLock(path, info); err != nil {
		return nil, fmt.Errorf("lock %s: %w", info.Name, err)
	}
	return &lease{s: s, path: path, ttl: ttl, info: info, lost: make(chan struct{})}, nil
}

// Locks implements [state.Store.Locks]. Holders are sorted by lock name.
func (s *Store) Locks(ctx context.Context) ([]state.LockInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	g, err := s.guard(unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer g.Close()
	all, err := s.readLocks()
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var live []state.LockInfo
	for _, l := range all {
		if s.stale(l.info) == "" {
			live = append(live, l.info)
		}
	}
	slices.SortFunc(live, func(a, b state.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return live, nil
}

type lockFile struct {
	path string
	info state.LockInfo
}

// readLocks reads every lock file. The caller holds the guard.
func (s *Store) readLocks() ([]lockFile, error) {
	entries, err := os.ReadDir(s.locksDir())
	if err != nil {
		return nil, err
	}
	var out []lockFile
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), lockExt) || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(s.locksDir(), e.Name())
		info, err := readLock(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, lockFile{path, info})
	}
	return out, nil
}

// Unlock implements [state.Store.Unlock]. It removes the lock whether it
// is live or stale.
func (s *Store) Unlock(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	g, err := s.guard(unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	defer g.Close()
	all, err := s.readLocks()
	if err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	for _, l := range all {
		if l.info.ID == id {
			if err := removeLock(l.path); err != nil {
				return fmt.Errorf("unlock %s: %w", id, err)
			}
			s.log.Info().Str("lock", l.info.Name).Str("id", id).Str("who", l.info.Who).
				Str("run", l.info.Run).Msg("lock removed by unlock")
			return nil
		}
	}
	return fmt.Errorf("unlock %s: %w", id, state.ErrNotFound)
}

// lease is a held lock file.
type lease struct {
	s    *Store
	path string
	ttl  time.Duration

	mu   sync.Mutex
	info state.LockInfo

	lostOnce sync.Once
	lost     chan struct{}
}

var _ state.Lease = (*lease)(nil)

func (l *lease) Info() state.LockInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// Refresh implements [state.Lease.Refresh]. A lease that has expired is
// lost even if nobody has taken it over yet: someone may have judged it
// stale.
func (l *lease) Refresh(ctx context.Context) error {
	info := l.Info()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("refresh lock %s: %w", info.Name, err)
	}
	g, err := l.s.guard(unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("refresh lock %s: %w", info.Name, err)
	}
	defer g.Close()

	cur, err := readLock(l.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.markLost()
		return fmt.Errorf("refresh lock %s (id %s): %w: the lock was removed", info.Name, info.ID, state.ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("refresh lock %s: %w", info.Name, err)
	case cur.ID != info.ID:
		l.markLost()
		return fmt.Errorf("refresh lock %s (id %s): %w: now held by %s", info.Name, info.ID, state.ErrLeaseLost, cur)
	}
	now := l.s.now()
	if !now.Before(cur.Expires) {
		l.markLost()
		if err := removeLock(l.path); err != nil {
			l.s.log.Warn().Err(err).Str("lock", info.Name).Msg("cannot remove own expired lock")
		}
		return fmt.Errorf("refresh lock %s (id %s): %w: it expired at %s", info.Name, info.ID, state.ErrLeaseLost,
			cur.Expires.UTC().Format(time.RFC3339Nano))
	}
	cur.Expires = now.Add(l.ttl).UTC()
	if err := writeLock(l.path, cur); err != nil {
		return fmt.Errorf("refresh lock %s: %w", info.Name, err)
	}
	l.mu.Lock()
	l.info.Expires = cur.Expires
	l.mu.Unlock()
	return nil
}

// Release implements [state.Lease.Release]. It removes the lock file only
// if it still holds this lease's ID, so releasing a lost lease leaves the
// new holder alone.
func (l *lease) Release(ctx context.Context) error {
	info := l.Info()
	g, err := l.s.guard(unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("release lock %s: %w", info.Name, err)
	}
	defer g.Close()
	cur, err := readLock(l.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("release lock %s: %w", info.Name, err)
	case cur.ID != info.ID:
		return nil
	}
	if err := removeLock(l.path); err != nil {
		return fmt.Errorf("release lock %s: %w", info.Name, err)
	}
	return nil
}
