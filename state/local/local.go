package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/takeover-dev/takeover/state"
)

// Store is a [state.Store] kept in one directory. It holds no open files
// between calls; any number of Stores, in any number of processes, may use
// the same directory at once.
type Store struct {
	dir   string
	log   zerolog.Logger
	now   func() time.Time
	alive func(pid int) bool
	host  string
}

var _ state.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger makes the Store log to l (torn journal tails, stale lock
// takeovers). The default logs nothing.
func WithLogger(l zerolog.Logger) Option { return func(s *Store) { s.log = l } }

// WithClock makes the Store read the time from now instead of time.Now. It
// decides lock creation and expiry.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithPIDAlive replaces the check of whether a process on this host is
// alive (by default kill(pid, 0), with EPERM counting as alive).
func WithPIDAlive(alive func(pid int) bool) Option { return func(s *Store) { s.alive = alive } }

// WithHostname sets the name this Store takes as its own host when it
// judges whether a lock holder's PID can be checked (default os.Hostname).
func WithHostname(host string) Option { return func(s *Store) { s.host = host } }

// Open opens the store in dir, creating it with mode 0700 if it does not
// exist. An existing dir must be a directory that grants nothing to group
// or others.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{
		dir:   dir,
		log:   zerolog.Nop(),
		now:   time.Now,
		alive: pidAlive,
	}
	for _, o := range opts {
		o(s)
	}
	if s.host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("open state directory %s: hostname: %w", dir, err)
		}
		s.host = h
	}
	if err := ensureDir(dir, true); err != nil {
		return nil, fmt.Errorf("open state directory: %w", err)
	}
	for _, sub := range []string{s.runsDir(), s.locksDir()} {
		if err := ensureDir(sub, false); err != nil {
			return nil, fmt.Errorf("open state directory: %w", err)
		}
	}
	return s, nil
}

// Close does nothing: a Store holds no resources between calls. Leases stay
// held.
func (s *Store) Close() error { return nil }

func (s *Store) runsDir() string  { return filepath.Join(s.dir, "runs") }
func (s *Store) locksDir() string { return filepath.Join(s.dir, "locks") }

// ensureDir makes path a directory of mode 0700 and, when it creates it,
// fsyncs its parent. With checkPerm an existing directory that grants
// anything to group or others is refused.
func ensureDir(path string, checkPerm bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		return syncDir(filepath.Dir(path))
	case err != nil:
		return fmt.Errorf("stat %s: %w", path, err)
	case !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory", path)
	case checkPerm && fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s has mode %04o, but it holds journals and lock holders and must not be open to group or others; run: chmod 700 %s",
			path, fi.Mode().Perm(), path)
	}
	return nil
}

// syncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// flock takes a flock(2) lock of the given kind (unix.LOCK_EX or
// unix.LOCK_SH) on f, retrying on EINTR. It is released when f is closed.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// pidAlive reports whether a process with this PID exists on this host.
// EPERM means it exists but belongs to someone else. A PID that cannot be
// checked (zero or negative) counts as alive: staleness must be proven.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
